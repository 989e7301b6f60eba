//! The plain-HTTP ceiling: a trivial handler (`GET /` → 13 bytes) on the same tokio/hyper/axum
//! stack as Conflux, so a load generator measures what the machine and the stack can do at best.

use axum::routing::get;

fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!("http: http://{}", listener.local_addr()?);
        let app = axum::Router::new().route("/", get(|| async { "Hello, World!" }));
        axum::serve(listener, app).await?;
        Ok(())
    })
}

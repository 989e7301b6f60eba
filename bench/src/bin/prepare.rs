//! Prepares a REST benchmark: logs in with the OAuth password grant and creates one Account.
//! Prints the access token and the record id, one per line.

use serde_json::json;

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [base, user, pass, id, secret] = a.as_slice() else {
        anyhow::bail!("usage: prepare BASE_URL USERNAME PASSWORD CLIENT_ID CLIENT_SECRET");
    };
    let api = bench::Api::login(base, user, pass, id, secret)?;
    let created = api.call(
        reqwest::Method::POST,
        "/sobjects/Account",
        Some(json!({"Name": "Benchmark Account", "Industry": "Technology", "NumberOfEmployees": 250, "BillingCity": "Lyon", "Phone": "+33 4 00 00 00 00"})),
    )?;
    let rid = created["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("create failed: {created}"))?;
    println!("{}\n{rid}", api.token);
    Ok(())
}

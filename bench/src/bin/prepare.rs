//! Prepares a REST benchmark: logs in with the OAuth password grant and creates one Account.
//! Prints the access token and the record id, one per line.

use serde_json::{json, Value};

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [base, user, pass, id, secret] = a.as_slice() else {
        anyhow::bail!("usage: prepare BASE_URL USERNAME PASSWORD CLIENT_ID CLIENT_SECRET");
    };
    let http = reqwest::blocking::Client::builder().no_proxy().build()?;
    let tok: Value = http
        .post(format!("{base}/services/oauth2/token"))
        .form(&[
            ("grant_type", "password"),
            ("client_id", id),
            ("client_secret", secret),
            ("username", user),
            ("password", pass),
        ])
        .send()?
        .json()?;
    let token = tok["access_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("login failed: {tok}"))?;
    let created: Value = http
        .post(format!("{base}/services/data/v59.0/sobjects/Account"))
        .bearer_auth(token)
        .json(&json!({"Name": "Benchmark Account", "Industry": "Technology", "NumberOfEmployees": 250, "BillingCity": "Lyon", "Phone": "+33 4 00 00 00 00"}))
        .send()?
        .json()?;
    let rid = created["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("create failed: {created}"))?;
    println!("{token}\n{rid}");
    Ok(())
}

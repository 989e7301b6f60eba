//! Durability: every create acknowledged before `kill -9` is there after a restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::json;

use crate::harness::{data_dir, Org};

#[test]
fn acknowledged_creates_survive_kill_9() {
    let data = data_dir("kill9");
    let org = Org::start_in(&data, &[], &[]);
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let url = org.data("/sobjects/Account");
    let mut writers = Vec::new();
    for w in 0..8 {
        let (acked, stop, url, token) = (
            acknowledged.clone(),
            stop.clone(),
            url.clone(),
            org.token.clone(),
        );
        writers.push(std::thread::spawn(move || {
            let http = crate::harness::client();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("kill9-{w}-{n}");
                n += 1;
                let Ok(resp) = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"Name": name}))
                    .send()
                else {
                    break;
                };
                if resp.status().as_u16() == 201 {
                    acked.lock().unwrap().push(name);
                }
            }
        }));
    }
    // Let the writers get going, then kill the server without warning while they are writing.
    while acknowledged.lock().unwrap().len() < 300 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let Org { srv, .. } = org;
    srv.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.join();
    }
    let acked = acknowledged.lock().unwrap().clone();
    assert!(acked.len() >= 300);

    let org = Org::start_in(&data, &[], &[]);
    let total = org.count("SELECT COUNT() FROM Account WHERE Name LIKE 'kill9-%'");
    assert!(
        total as usize >= acked.len(),
        "{total} rows after restart, {} acknowledged",
        acked.len()
    );
    // Check every acknowledged name individually (in batches).
    for chunk in acked.chunks(100) {
        let list: Vec<String> = chunk.iter().map(|n| format!("'{n}'")).collect();
        let q = format!(
            "SELECT COUNT() FROM Account WHERE Name IN ({})",
            list.join(",")
        );
        assert_eq!(
            org.count(&q) as usize,
            chunk.len(),
            "an acknowledged create is missing after kill -9"
        );
    }
    // The restarted server accepts writes again.
    let (s, _) = org.call(
        Method::POST,
        &org.data("/sobjects/Account"),
        Some(json!({"Name": "after restart"})),
    );
    assert_eq!(s, 201);
}

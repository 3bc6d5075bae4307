//! Raw JSON requests, for the tests of what the server says to bad input (malformed bodies,
//! unknown fields, wrong types): the typed client cannot send those.

use reqwest::StatusCode;
use serde_json::Value;

/// A plain HTTP client (the process's TLS provider installed first, as reqwest needs one).
pub fn raw() -> reqwest::Client {
    hotswap_client::install_crypto_provider();
    reqwest::Client::new()
}

pub async fn post(client: &reqwest::Client, url: String, body: &Value) -> (StatusCode, Value) {
    let response = client.post(url).json(body).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

pub async fn get(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// The message of a JSON error answer.
pub fn message(body: &Value) -> &str {
    body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not a JSON error: {body}"))
}

/// Posts each case and checks its status and that its JSON error message contains the expected
/// piece: `(what, body, status, piece of the message)`.
pub async fn assert_refusals(
    client: &reqwest::Client,
    url: &str,
    cases: Vec<(&str, Value, StatusCode, &str)>,
) {
    for (what, body, status, expected) in cases {
        let (got, answer) = post(client, url.to_string(), &body).await;
        assert_eq!(got, status, "{what}: {answer}");
        assert!(
            message(&answer).contains(expected),
            "{what}: {:?} does not contain {expected:?}",
            message(&answer)
        );
    }
}

/// A copy of `base` changed by `f`: one bad field at a time in the tables of refusals.
pub fn edited(base: &Value, f: &dyn Fn(&mut Value)) -> Value {
    let mut body = base.clone();
    f(&mut body);
    body
}

/// A POST with `token` as its credential (a device's, where the client holds an operator's).
pub async fn post_as(
    client: &reqwest::Client,
    token: &str,
    url: String,
    body: &Value,
) -> (StatusCode, Value) {
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

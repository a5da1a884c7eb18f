use std::time::Duration;

use crate::support::TestApp;
use crate::widgets;

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_stops_accepting() {
    let mut app = TestApp::builder().routes(widgets::routes()).spawn().await;
    let slow = tokio::spawn({
        let client = app.client.clone();
        let url = app.url("/v1/test/sleep/1500");
        async move { client.get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = app.begin_stop();

    let response = slow
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "slept");
    stopping.await.unwrap().expect("clean stop");

    let fresh = reqwest::Client::new();
    assert!(
        fresh.get(app.url("/health/live")).send().await.is_err(),
        "no longer accepting"
    );
}

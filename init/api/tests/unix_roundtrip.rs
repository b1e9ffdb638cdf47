//! The server and the client over a real unix socket, with a fake node:
//! status, actions, and every error answer.

use std::sync::Arc;

use hyper::{Method, StatusCode};
use keel_api::fake::FakeNode;
use keel_api::{Accepted, Client, Endpoint, ErrorBody, Node, Status};

#[test]
fn unix_socket_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("api.sock");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let node: Arc<dyn Node> = Arc::new(FakeNode::default());
    let listener = {
        let _g = rt.enter();
        tokio::net::UnixListener::bind(&sock).unwrap()
    };
    rt.spawn(keel_api::serve_unix(
        listener,
        node,
        keel_api::server::MAX_UNIX_CONNECTIONS,
    ));
    let client = Client::new(Endpoint::parse(&format!("unix:{}", sock.display())).unwrap());
    rt.block_on(async {
        let s: Status = client.call(Method::GET, "/v1/status").await.unwrap();
        assert_eq!(s.hostname, "fake");

        // Root on the node may apply a config without api: (the TCP port's
        // guard is for remote callers; see tests/tls.rs).
        let (st, body) = client
            .request(Method::POST, "/v1/config", b"#cloud-config\n".to_vec())
            .await
            .unwrap();
        assert_eq!(st, StatusCode::OK);
        let a: keel_api::ConfigApplied = serde_json::from_slice(&body).unwrap();
        assert_eq!(a.changed, ["keep_api=false"]);

        let a: Accepted = client.call(Method::POST, "/v1/reboot").await.unwrap();
        assert_eq!(a.action, "reboot");
        // A second request while one runs: 409 with the node's reason.
        let (st, body) = client
            .request(Method::POST, "/v1/poweroff", vec![])
            .await
            .unwrap();
        assert_eq!(st, StatusCode::CONFLICT);
        let e: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(e.message, "a reboot is already under way");

        let (st, body) = client.request(Method::GET, "/nope", vec![]).await.unwrap();
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert_eq!(
            serde_json::from_slice::<ErrorBody>(&body).unwrap().error,
            "not_found"
        );

        let (st, _) = client
            .request(Method::PUT, "/v1/status", vec![])
            .await
            .unwrap();
        assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);

        let (st, body) = client
            .request(
                Method::GET,
                "/v1/status",
                vec![0; keel_api::server::MAX_BODY + 1],
            )
            .await
            .unwrap();
        assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            serde_json::from_slice::<ErrorBody>(&body).unwrap().error,
            "body_too_large"
        );

        // call() turns a non-2xx answer into an error carrying the message.
        let err = client
            .call::<Status>(Method::GET, "/v2/keys")
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("no such endpoint: GET /v2/keys"),
            "{err}"
        );
    });

    let missing = Client::new(Endpoint::Unix(dir.path().join("absent.sock")));
    let err = missing
        .call_blocking::<Status>(Method::GET, "/v1/status")
        .unwrap_err();
    assert!(err.to_string().starts_with("connect to unix:"), "{err}");
}

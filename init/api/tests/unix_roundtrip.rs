//! The server and the client over a real unix socket, with a fake node:
//! status, actions, and every error answer.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use hyper::{Method, StatusCode};
use keel_api::types::Timeline;
use keel_api::{Accepted, Client, Endpoint, ErrorBody, Memory, Node, NodeState, Processes, Status};

#[derive(Default)]
struct FakeNode {
    power_requests: AtomicU32,
}

impl Node for FakeNode {
    fn status(&self) -> Status {
        Status {
            version: "test".into(),
            hostname: "fake".into(),
            state: NodeState::Ready,
            uptime_ms: 1.0,
            boot: Timeline::default(),
            memory: Memory {
                total_kb: 1,
                available_kb: 1,
                used_kb: 0,
                pid1_rss_kb: 1,
            },
            processes: Processes {
                total: 1,
                zombies: 0,
                reaped: 0,
            },
            root: Default::default(),
            config: Default::default(),
        }
    }
    fn apply_config(&self, _text: String, dry_run: bool) -> keel_api::ConfigApplied {
        keel_api::ConfigApplied {
            dry_run,
            accepted: true,
            ..Default::default()
        }
    }

    fn config(&self) -> keel_api::ConfigStatus {
        keel_api::ConfigStatus::default()
    }

    fn network(&self) -> keel_api::NetworkStatus {
        keel_api::NetworkStatus::default()
    }

    fn request_power(&self, _poweroff: bool) -> Result<(), String> {
        if self.power_requests.fetch_add(1, Ordering::SeqCst) == 0 {
            Ok(())
        } else {
            Err("a reboot is already under way".into())
        }
    }
}

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
    rt.spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            tokio::spawn(keel_api::serve(s, node.clone()));
        }
    });
    let client = Client::new(Endpoint::parse(&format!("unix:{}", sock.display())).unwrap());
    rt.block_on(async {
        let s: Status = client.call(Method::GET, "/v1/status").await.unwrap();
        assert_eq!(s.hostname, "fake");

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

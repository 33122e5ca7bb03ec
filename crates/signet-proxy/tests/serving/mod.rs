//! `--runtime per-core`: several single-threaded runtimes, each accepting on
//! its own `SO_REUSEPORT` listener, behave as one proxy.

use std::time::Duration;

use signet_proxy::app::serving::{Runtimes, Serving};
use signet_proxy::Server;
use signet_standin::StandIn;
use tokio::sync::oneshot;

use crate::support::{config, send, Request, Signer, TOKEN};

#[test]
fn per_core_runtimes_serve_every_connection_and_stop_together() {
    let runtimes = Runtimes::new(Serving::PerCore, Some(2)).expect("runtimes");
    let workers = runtimes.workers();
    assert_eq!(workers.len(), 1, "one runtime per further core");
    runtimes.main().block_on(async {
        let upstream = StandIn::start(Some(TOKEN)).await.expect("stand-in");
        let signer = Signer::new();
        let mut config = config(&upstream.url(), &signer);
        config.serving = Serving::PerCore;
        let server = Server::bind(&config).await.expect("binds");
        let addr = server.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            server
                .run_on(&workers, async {
                    let _ = stopped.await;
                })
                .await;
        });
        // Each request on a new connection: the kernel spreads them over
        // both listeners, so a runtime that did not serve its own would
        // leave some of them unanswered.
        for _ in 0..32 {
            let proof = signer.sign("GET", "/user", b"");
            let reply = tokio::time::timeout(
                Duration::from_secs(10),
                send(addr, &Request::get("/user").proof(proof)),
            )
            .await
            .expect("answered on whichever listener accepted it");
            assert_eq!(reply.status, 200);
        }
        assert_eq!(upstream.requests().len(), 32);

        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), serving)
            .await
            .expect("shutdown finishes")
            .expect("no panic");
        // Every runtime's listener is closed, not only the first one's.
        for _ in 0..8 {
            assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        }
    });
    runtimes.shutdown(Duration::from_secs(1));
}

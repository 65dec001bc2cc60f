//! Names and certificates: `localhost` resolves, TLS is verified against `tls.ca_file` (or the
//! built-in roots), and bad TLS material is refused at start.

use super::{
    fake::{testdata, FakeShadow},
    get, target_config, Harness,
};
use crate::{config::Tls, shadow::Target};

#[tokio::test]
async fn dns_name_localhost_resolves() {
    let harness = Harness::new();
    let shadow = FakeShadow::new().start().await;
    // `localhost` may resolve to ::1 first, where nothing listens: the next address is tried.
    let target = harness.spawn(target_config(format!(
        "localhost:{}",
        shadow.address.port()
    )));
    target.try_submit(get("/")).expect("queued");
    harness
        .reaches("an answer", 1.0, |h| h.responses("2xx"))
        .await;
}

#[tokio::test]
async fn tls_with_the_ca_file_delivers_the_copy() {
    let harness = Harness::new();
    let shadow = FakeShadow::new().tls().start().await;
    let mut config = target_config(format!("localhost:{}", shadow.address.port()));
    config.tls = Some(Tls {
        server_name: None,
        ca_file: Some(testdata("ca.pem")),
    });
    let target = harness.spawn(config);
    for answered in [1.0, 2.0] {
        target.try_submit(get("/")).expect("queued");
        harness
            .reaches("an answer", answered, |h| h.responses("2xx"))
            .await;
    }
    assert_eq!(shadow.seen().requests.len(), 2);
    assert_eq!(
        shadow.seen().accepted,
        1,
        "the TLS connection was kept alive"
    );
}

#[tokio::test]
async fn server_name_overrides_the_address_host() {
    let harness = Harness::new();
    let shadow = FakeShadow::new().tls().start().await;
    let mut config = target_config(shadow.address);
    config.tls = Some(Tls {
        server_name: Some("localhost".into()),
        ca_file: Some(testdata("ca.pem")),
    });
    let target = harness.spawn(config);
    target.try_submit(get("/")).expect("queued");
    harness
        .reaches("an answer", 1.0, |h| h.responses("2xx"))
        .await;
}

#[tokio::test]
async fn untrusted_certificate_counts_tls() {
    let harness = Harness::new();
    let shadow = FakeShadow::new().tls().start().await;
    let mut config = target_config(format!("localhost:{}", shadow.address.port()));
    // The built-in public roots do not know the test CA.
    config.tls = Some(Tls::default());
    let target = harness.spawn(config);
    target.try_submit(get("/")).expect("queued");
    harness
        .reaches("a tls error", 1.0, |h| h.errors("tls"))
        .await;
    assert!(shadow.seen().requests.is_empty());
}

#[tokio::test]
async fn unusable_tls_material_fails_at_start() {
    let harness = Harness::new();
    let cases = [
        (
            Some(testdata("missing.pem")),
            None,
            "cannot read tls.ca_file",
        ),
        (
            Some(testdata("README.md")),
            None,
            "holds no usable CA certificate",
        ),
        (None, Some("not a name!"), "is not a valid tls server name"),
    ];
    for (ca_file, server_name, message) in cases {
        let mut config = target_config("localhost:443");
        config.tls = Some(Tls {
            server_name: server_name.map(String::from),
            ca_file,
        });
        let error = Target::spawn(config, &harness.metrics).expect_err("bad tls material");
        let error = error.to_string();
        assert!(error.starts_with("shadow staging: "), "{error}");
        assert!(error.contains(message), "{error}");
    }
}

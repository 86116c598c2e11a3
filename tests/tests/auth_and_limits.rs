//! Must-show 4: every RPC but health needs the cluster token; oversize messages are refused.
//! Runs against the real `verifier serve` process (no model needed).

use std::time::Duration;

use laser_integration_tests::{TEST_TOKEN, bin, spawn_server};
use laser_proto::rt::{ClientOptions, ClusterToken, request, with_deadline};
use laser_proto::v1::verifier_client::VerifierClient;
use laser_proto::v1::{GradeItem, GradeRequest, GradeStatus};
use tonic::Code;

const D: Duration = Duration::from_secs(10);

fn grade_request(response: String) -> GradeRequest {
    GradeRequest {
        items: vec![GradeItem {
            id: 7,
            gold: "4".into(),
            response,
            data_source: String::new(),
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_required_health_is_open_and_oversize_is_refused() {
    let (_server, addr) = spawn_server(
        &bin("verifier"),
        &["serve", "--listen", "127.0.0.1:0", "--max-message-mb", "1"],
        &[],
        Duration::from_secs(30),
    );
    let good = ClientOptions::new(ClusterToken::new(TEST_TOKEN).unwrap());
    let channel = good.connect(&addr).await.expect("connect");

    // Health answers without any token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let h = with_deadline(
        "Health.Check",
        D,
        health.check(request(
            tonic_health::pb::HealthCheckRequest {
                service: "laser.v1.Verifier".into(),
            },
            D,
        )),
    )
    .await
    .expect("health without a token");
    assert_eq!(
        h.get_ref().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // No token at all.
    let mut bare = VerifierClient::new(channel.clone());
    let e = with_deadline(
        "Grade",
        D,
        bare.grade(request(grade_request("\\boxed{4}".into()), D)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // A wrong token (same length, one character off).
    let mut wrong_token = TEST_TOKEN.to_string();
    wrong_token.pop();
    wrong_token.push('X');
    let wrong = ClientOptions::new(ClusterToken::new(&wrong_token).unwrap());
    let e = with_deadline(
        "Grade",
        D,
        wrong
            .verifier(channel.clone())
            .grade(request(grade_request("\\boxed{4}".into()), D)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(
        !e.message().contains(TEST_TOKEN),
        "errors never echo the token"
    );

    // Reflection also needs the token.
    let mut refl = tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
        channel.clone(),
    );
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let e = with_deadline(
        "ServerReflectionInfo",
        D,
        refl.server_reflection_info(request(tokio_stream::iter(vec![req]), D)),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // The right token: a real grade comes back.
    let mut ok = good.verifier(channel.clone());
    let r = with_deadline(
        "Grade",
        D,
        ok.grade(request(
            grade_request("so the answer is \\boxed{4}".into()),
            D,
        )),
    )
    .await
    .expect("grade with the token")
    .into_inner();
    assert_eq!(r.results.len(), 1);
    assert_eq!((r.results[0].id, r.results[0].reward), (7, 1.0));
    assert_eq!(r.results[0].status, GradeStatus::Correct as i32);

    // 2 MiB against the server's 1 MiB limit: refused, and the server keeps serving.
    let mut big_client = ClientOptions::new(ClusterToken::new(TEST_TOKEN).unwrap());
    big_client.max_message_bytes = 16 << 20;
    let mut big = big_client.verifier(channel.clone());
    let e = with_deadline(
        "Grade",
        D,
        big.grade(request(grade_request("9".repeat(2 << 20)), D)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e.code(), Code::OutOfRange | Code::ResourceExhausted),
        "oversize message: {e:?}"
    );
    let r = with_deadline(
        "Grade",
        D,
        ok.grade(request(grade_request("\\boxed{5}".into()), D)),
    )
    .await
    .expect("server still serves after refusing an oversize message")
    .into_inner();
    assert_eq!(r.results[0].reward, 0.0);
}

//! What every gRPC listener serves besides its own services: `grpc.health.v1` and server
//! reflection (v1 and v1alpha, for newer and older clients alike), listing only the
//! services that listener actually serves. Built once here for the gateway and nodes.

use tonic::service::Routes;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{process::shutdown::ShutdownSignal, serving::admin::Readiness};

const HEALTH: &str = "grpc.health.v1.Health";
const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// Reflection could not be built from the descriptors.
#[derive(Debug, thiserror::Error)]
#[error("reflection: {0}")]
pub struct ReflectionError(String);

/// Health and reflection for a listener serving `services` (fully qualified names),
/// described by `descriptors` (encoded `FileDescriptorSet`s). Each service starts
/// SERVING; the overall `""` status too.
pub async fn health_and_reflection(
    services: &[&str],
    descriptors: &[&'static [u8]],
) -> Result<(HealthReporter, Routes), ReflectionError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    for service in services {
        health
            .set_service_status(*service, ServingStatus::Serving)
            .await;
    }
    // Both versions list (and describe) both reflection services: a client sees the
    // same port whichever version it speaks.
    let builder = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            );
        for d in descriptors {
            b = b.register_encoded_file_descriptor_set(d);
        }
        for name in services
            .iter()
            .copied()
            .chain([HEALTH, REFLECTION_V1, REFLECTION_V1ALPHA])
        {
            b = b.with_service_name(name);
        }
        b
    };
    let v1 = builder()
        .build_v1()
        .map_err(|e| ReflectionError(e.to_string()))?;
    let v1alpha = builder()
        .build_v1alpha()
        .map_err(|e| ReflectionError(e.to_string()))?;
    let routes = Routes::new(health_service)
        .add_service(v1)
        .add_service(v1alpha);
    Ok((health, routes))
}

/// When `shutdown` fires, turns readiness false and every health status NOT_SERVING, so
/// probes and load balancers stop sending new work while calls in flight drain.
pub fn not_serving_on_shutdown(
    health: HealthReporter,
    services: Vec<String>,
    readiness: Readiness,
    shutdown: ShutdownSignal,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        shutdown.wait().await;
        readiness.set(false);
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for service in &services {
            health
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
    })
}

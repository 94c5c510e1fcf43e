//! The OpenAPI 3 description of the API, served at `/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};
use super::{foresight, handlers, history};
use crate::twin::view;

#[derive(OpenApi)]
#[openapi(
    info(title = "twinstream", description = "Twins, alerts, health and metrics of a twinstream node."),
    paths(
        handlers::healthz,
        handlers::readyz,
        handlers::metrics,
        handlers::list_twins,
        handlers::get_twin,
        handlers::send_command,
        foresight::forecast,
        foresight::what_if,
        history::history,
        history::alerts,
        history::commands,
        handlers::list_alerts,
        handlers::ack_alert,
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        handlers::Alive,
        handlers::ReadyBody,
        handlers::TwinPage,
        handlers::AlertPage,
        view::TwinView,
        view::TwinSummary,
        view::SensorView,
        view::SourceView,
        view::ReadingView,
        view::WindowView,
        view::JoinView,
        view::RelationView,
        view::StatsView,
        view::AlertView,
        view::DesiredView,
        view::CommandView,
        view::ModelView,
        view::EstimateView,
        view::ObservedView,
        handlers::CommandBody,
        foresight::WhatIfBody,
        foresight::HypotheticalBody,
        foresight::MeanStd,
        foresight::PointView,
        foresight::ForecastView,
        foresight::FiredView,
        foresight::RuleCommandView,
        foresight::WhatIfView,
        history::PointView,
        history::ReadingPoint,
        history::SeriesView,
        history::HistoryView,
        history::AlertHistoryView,
        history::CommandHistoryView,
        view::AlertTransitionView,
    )),
    modifiers(&Bearer),
    tags(
        (name = "twins", description = "Twin state"),
        (name = "alerts", description = "Alert lifecycle"),
        (name = "health", description = "Liveness, readiness, metrics"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document, rendered once.
pub fn json() -> String {
    ApiDoc::openapi().to_json().expect("the OpenAPI document serialises")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(&super::json()).unwrap();
        for path in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/twins",
            "/twins/{id}",
            "/twins/{id}/commands",
            "/twins/{id}/forecast",
            "/twins/{id}/whatif",
            "/alerts",
            "/alerts/{id}/ack",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        assert!(doc["components"]["schemas"]["TwinView"]["properties"]["sensors"].is_object());
    }
}

//! The OpenAPI 3 description of the API, served at `/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};
use super::{foresight, handlers, history, view};
use crate::twin::view as twin_view;

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
        view::types,
        view::events::events,
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        handlers::Alive,
        handlers::ReadyBody,
        handlers::TwinPage,
        handlers::AlertPage,
        twin_view::TwinView,
        twin_view::TwinSummary,
        twin_view::SensorView,
        twin_view::SourceView,
        twin_view::ReadingView,
        twin_view::WindowView,
        twin_view::JoinView,
        twin_view::RelationView,
        twin_view::StatsView,
        twin_view::AlertView,
        twin_view::DesiredView,
        twin_view::CommandView,
        twin_view::ModelView,
        twin_view::EstimateView,
        twin_view::ObservedView,
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
        twin_view::AlertTransitionView,
        twin_view::AlertEvent,
        twin_view::TypeView,
        twin_view::SensorTypeView,
        twin_view::CommandTypeView,
        twin_view::HistoryTypeView,
        twin_view::TierView,
    )),
    modifiers(&Bearer),
    tags(
        (name = "twins", description = "Twin state"),
        (name = "alerts", description = "Alert lifecycle"),
        (name = "health", description = "Liveness, readiness, metrics"),
        (name = "view", description = "What the operator's web page at `/` reads: asset types and the live stream of changes"),
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

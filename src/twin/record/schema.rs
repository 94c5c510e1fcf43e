//! The stored per-type name schema a twin record indexes (not the compiled
//! per-type tables of `twin::schema`): its names, stored form and id.

use serde::{Deserialize, Serialize};

use super::config;
use crate::store::envelope::{self, EnvelopeError};
use crate::twin::schema::TypeModel;

/// Format version of [`Schema`] payloads written by this build. Version 1
/// (sensors, slots and rules only) is read too.
pub const SCHEMA_FORMAT: u16 = 2;

/// The names of an asset type's parts, in the order records index them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    pub asset_type: String,
    pub sensors: Vec<String>,
    /// Window slots as `(window, sensor)`.
    pub slots: Vec<(String, String)>,
    pub rules: Vec<String>,
    /// Per-source readings as `sensor@source`.
    pub sources: Vec<String>,
    pub joins: Vec<String>,
    /// Related values as `relation.sensor`.
    pub related: Vec<String>,
}

/// Schema format 1.
#[derive(Deserialize)]
struct SchemaV1 {
    asset_type: String,
    sensors: Vec<String>,
    slots: Vec<(String, String)>,
    rules: Vec<String>,
}

impl Schema {
    pub fn of(m: &TypeModel) -> Schema {
        Schema {
            asset_type: m.name.to_string(),
            sensors: m.sensors.iter().map(|s| s.to_string()).collect(),
            slots: m
                .slots
                .iter()
                .map(|s| {
                    (
                        m.windows[s.window as usize].name.to_string(),
                        m.sensors[s.sensor as usize].to_string(),
                    )
                })
                .collect(),
            rules: m.rules.iter().map(|r| r.name.to_string()).collect(),
            sources: m
                .sensor_defs
                .iter()
                .enumerate()
                .flat_map(|(s, d)| {
                    d.sources
                        .iter()
                        .flat_map(|set| set.sources.iter())
                        .map(move |src| format!("{}@{}", m.sensors[s], src.name))
                })
                .collect(),
            joins: m.joins.iter().map(|j| j.name.to_string()).collect(),
            related: m.related.iter().map(|r| r.name.to_string()).collect(),
        }
    }

    /// The stored form: an envelope around bincode.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = envelope::start(SCHEMA_FORMAT, 128);
        bincode::serde::encode_into_std_write(self, &mut buf, config()).expect("writing to a Vec cannot fail");
        buf
    }

    pub fn decode(bytes: &[u8]) -> Result<Schema, EnvelopeError> {
        let corrupt = |e: bincode::error::DecodeError| EnvelopeError::Corrupt(format!("twin schema: {e}"));
        match envelope::open(bytes, 1, "twin schema") {
            Ok(payload) => {
                let (v1, _): (SchemaV1, _) = bincode::serde::decode_from_slice(payload, config()).map_err(corrupt)?;
                return Ok(Schema {
                    asset_type: v1.asset_type,
                    sensors: v1.sensors,
                    slots: v1.slots,
                    rules: v1.rules,
                    ..Schema::default()
                });
            }
            Err(EnvelopeError::UnknownVersion { .. }) => {}
            Err(e) => return Err(e),
        }
        let payload = envelope::open(bytes, SCHEMA_FORMAT, "twin schema")?;
        bincode::serde::decode_from_slice(payload, config())
            .map(|(s, _)| s)
            .map_err(corrupt)
    }

    /// Content hash of the stored form: the id records refer to.
    pub fn id(&self) -> u64 {
        envelope::fnv1a(&self.encode())
    }

    pub fn meta_key(id: u64) -> String {
        format!("schema/{id:016x}")
    }
}

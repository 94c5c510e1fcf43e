//! Twins in the store: a stored record read back under the current model
//! (the restore hook's IO), and the per-type schemas records refer to. The
//! record format itself is pure and lives with the model
//! ([`crate::twin::record`]).

use crate::store::envelope::EnvelopeError;
use crate::store::{Store, StoreError};
use crate::twin::model::TwinState;
use crate::twin::record::{self, RestoreNotes, Schema};
use crate::twin::schema::TypeModel;

/// Stores `schema` unless the store has it already (schemas are immutable:
/// the key is the content hash). Before any twin record that refers to it.
pub fn ensure_schema_stored(store: &Store, schema: &Schema) -> Result<(), StoreError> {
    let key = Schema::meta_key(schema.id());
    if store.get_meta(&key)?.is_none() {
        store.put_meta(&key, &schema.encode())?;
    }
    Ok(())
}

/// The schema with id `id`, from the store.
pub fn load_schema(store: &Store, id: u64) -> Result<Schema, StoreError> {
    let key = Schema::meta_key(id);
    let cause = |cause| StoreError::Envelope {
        key: key.clone(),
        cause,
    };
    match store.get_meta(&key)? {
        Some(bytes) => Schema::decode(&bytes).map_err(cause),
        None => Err(cause(EnvelopeError::Corrupt(format!(
            "a twin record refers to schema {id:016x}, which the store does not hold"
        )))),
    }
}

/// A stored twin read back under the current model.
#[derive(Debug)]
pub enum Restored {
    State(TwinState, RestoreNotes),
    /// The record belongs to another asset type (the asset changed type in
    /// the topology): it does not apply.
    OtherType {
        stored: String,
    },
}

/// Why a stored twin cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Record(#[from] EnvelopeError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads the stored record `bytes` of a twin of type `model`. A record
/// written under another topology is read by the schema it names.
pub fn restore(store: &Store, model: &TypeModel, bytes: &[u8]) -> Result<Restored, RestoreError> {
    let rec = record::decode(bytes)?;
    let other = if rec.schema == model.schema_id {
        None
    } else {
        Some(load_schema(store, rec.schema)?)
    };
    let stored = other.as_ref().unwrap_or(&model.schema);
    if stored.asset_type != *model.name {
        return Ok(Restored::OtherType {
            stored: stored.asset_type.clone(),
        });
    }
    let (state, notes) = rec.into_state(model, stored);
    Ok(Restored::State(state, notes))
}

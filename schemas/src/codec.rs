//! Avro single-object encoding (`C3 01`, 8-byte CRC-64-AVRO fingerprint, binary datum) for every record type.
//! A reader knows every version of a schema that was ever shipped, so records written by an older version
//! decode with the current one (schema resolution fills the defaults).

use std::io::Cursor;
use std::marker::PhantomData;

use apache_avro::rabin::Rabin;
use apache_avro::{Schema, from_avro_datum, from_value, to_avro_datum, to_value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::{Alert, AuditEvent, CloudActivity, Detection, NodeEvent};

const MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("{record}: not Avro single-object encoding (first bytes {found:02x?}, expected c3 01 + fingerprint)")]
    NotSingleObject { record: &'static str, found: Vec<u8> },
    #[error("{record}: unknown schema fingerprint {fingerprint}; the writer used a schema this build does not ship")]
    UnknownFingerprint { record: &'static str, fingerprint: String },
    #[error("{record}: Avro error: {source}")]
    Avro {
        record: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
    #[error("{record}: bundled schema {version} does not parse: {source}")]
    BadSchema {
        record: &'static str,
        version: &'static str,
        #[source]
        source: Box<apache_avro::Error>,
    },
}

/// One shipped version of a record's schema.
#[derive(Debug, Clone, Copy)]
pub struct SchemaVersion {
    pub version: &'static str,
    pub json: &'static str,
}

/// A record type with its schema history, oldest first; the last entry is the one this build writes.
pub trait Record: Serialize + DeserializeOwned {
    const NAME: &'static str;
    const SCHEMAS: &'static [SchemaVersion];
}

macro_rules! record {
    ($ty:ty, $name:literal, [$($version:literal => $file:literal),+ $(,)?]) => {
        impl Record for $ty {
            const NAME: &'static str = $name;
            const SCHEMAS: &'static [SchemaVersion] =
                &[$(SchemaVersion { version: $version, json: include_str!(concat!("../avro/", $file)) }),+];
        }
    };
}

record!(NodeEvent, "NodeEvent", ["v1" => "node_event.v1.avsc"]);
record!(AuditEvent, "AuditEvent", ["v1" => "audit_event.v1.avsc"]);
record!(CloudActivity, "CloudActivity", ["v1" => "cloud_activity.v1.avsc"]);
record!(Detection, "Detection", ["v1" => "detection.v1.avsc"]);
record!(Alert, "Alert", ["v1" => "alert.v1.avsc", "v2" => "alert.v2.avsc"]);

/// Encoder and decoder for one record type. Build once, share freely.
#[derive(Debug, Clone)]
pub struct Codec<T: Record> {
    versions: Vec<(&'static str, [u8; 8], Schema)>,
    _record: PhantomData<fn() -> T>,
}

impl<T: Record> Codec<T> {
    pub fn new() -> Result<Self, CodecError> {
        let mut versions = Vec::with_capacity(T::SCHEMAS.len());
        for schema_version in T::SCHEMAS {
            let schema = Schema::parse_str(schema_version.json).map_err(|source| CodecError::BadSchema {
                record: T::NAME,
                version: schema_version.version,
                source: Box::new(source),
            })?;
            let fingerprint = fingerprint_of(&schema);
            versions.push((schema_version.version, fingerprint, schema));
        }
        Ok(Self { versions, _record: PhantomData })
    }

    /// The schema this build writes.
    pub fn current_schema(&self) -> &Schema {
        &self.versions.last().expect("every record ships at least one schema").2
    }

    pub fn current_version(&self) -> &'static str {
        self.versions.last().expect("every record ships at least one schema").0
    }

    /// Encodes with the current schema.
    pub fn encode(&self, record: &T) -> Result<Vec<u8>, CodecError> {
        let (_, fingerprint, schema) = self.versions.last().expect("every record ships at least one schema");
        encode_with(record, schema, fingerprint)
    }

    /// Encodes with an older shipped schema; used by compatibility tests and golden fixtures.
    pub fn encode_version(&self, record: &T, version: &str) -> Result<Vec<u8>, CodecError> {
        let (_, fingerprint, schema) = self
            .versions
            .iter()
            .find(|(v, _, _)| *v == version)
            .ok_or_else(|| CodecError::UnknownFingerprint { record: T::NAME, fingerprint: version.to_owned() })?;
        encode_with(record, schema, fingerprint)
    }

    /// Decodes a record written by any shipped version into the current type.
    pub fn decode(&self, bytes: &[u8]) -> Result<T, CodecError> {
        if bytes.len() < HEADER_LEN || bytes[..2] != MAGIC {
            return Err(CodecError::NotSingleObject {
                record: T::NAME,
                found: bytes.iter().take(HEADER_LEN).copied().collect(),
            });
        }
        let fingerprint = &bytes[2..HEADER_LEN];
        let (_, _, writer) =
            self.versions.iter().find(|(_, f, _)| f == fingerprint).ok_or_else(|| CodecError::UnknownFingerprint {
                record: T::NAME,
                fingerprint: fingerprint.iter().map(|b| format!("{b:02x}")).collect(),
            })?;
        let avro = |source| CodecError::Avro { record: T::NAME, source: Box::new(source) };
        let mut datum = Cursor::new(&bytes[HEADER_LEN..]);
        let value = from_avro_datum(writer, &mut datum, Some(self.current_schema())).map_err(avro)?;
        from_value::<T>(&value).map_err(avro)
    }
}

fn fingerprint_of(schema: &Schema) -> [u8; 8] {
    let digest = schema.fingerprint::<Rabin>();
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest.bytes[..8]);
    out
}

fn encode_with<T: Record>(record: &T, schema: &Schema, fingerprint: &[u8; 8]) -> Result<Vec<u8>, CodecError> {
    let avro = |source| CodecError::Avro { record: T::NAME, source: Box::new(source) };
    let value = to_value(record).map_err(avro)?.resolve(schema).map_err(avro)?;
    let datum = to_avro_datum(schema, value).map_err(avro)?;
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(fingerprint);
    out.extend_from_slice(&datum);
    Ok(out)
}

#[cfg(test)]
mod tests;

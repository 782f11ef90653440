//! Avro single-object encoding (`C3 01`, 8-byte CRC-64-AVRO fingerprint, binary datum) for every record type.
//! A reader knows every version of a schema that was ever shipped, so records written by an older version
//! decode with the current one (schema resolution fills the defaults).

use std::io::Cursor;
use std::marker::PhantomData;

use apache_avro::rabin::Rabin;
use apache_avro::{Schema, from_avro_datum, from_value, to_avro_datum, to_value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::datum::{self, DatumError};
use crate::types::{Alert, AuditEvent, CloudActivity, ClusterObject, Detection, NodeEvent};

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
    #[error("{record}: bad Avro datum: {source}")]
    Datum {
        record: &'static str,
        #[source]
        source: DatumError,
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

    /// Writes the current schema's datum by hand, where the serde path is too slow; `false` if the record has
    /// no such writer.
    fn write_current_datum(&self, _out: &mut Vec<u8>) -> bool {
        false
    }

    /// Reads a datum of the current schema by hand; `None` if the record has no such reader.
    fn read_current_datum(_datum: &[u8]) -> Option<Result<Self, DatumError>> {
        None
    }
}

macro_rules! record {
    ($ty:ty, $name:literal, [$($version:literal => $file:literal),+ $(,)?] $(, by hand: $write:path, $read:path)?) => {
        impl Record for $ty {
            const NAME: &'static str = $name;
            const SCHEMAS: &'static [SchemaVersion] =
                &[$(SchemaVersion { version: $version, json: include_str!(concat!("../avro/", $file)) }),+];
            $(
                fn write_current_datum(&self, out: &mut Vec<u8>) -> bool {
                    $write(self, out);
                    true
                }

                fn read_current_datum(datum: &[u8]) -> Option<Result<Self, DatumError>> {
                    Some($read(datum))
                }
            )?
        }
    };
    ($ty:ty, $name:literal, [$($version:literal => $file:literal),+ $(,)?], read by hand: $read:path) => {
        impl Record for $ty {
            const NAME: &'static str = $name;
            const SCHEMAS: &'static [SchemaVersion] =
                &[$(SchemaVersion { version: $version, json: include_str!(concat!("../avro/", $file)) }),+];

            fn read_current_datum(datum: &[u8]) -> Option<Result<Self, DatumError>> {
                Some($read(datum))
            }
        }
    };
}

record!(NodeEvent, "NodeEvent", ["v1" => "node_event.v1.avsc", "v2" => "node_event.v2.avsc"], by hand: datum::write_node_event, datum::read_node_event);
// Written by apache-avro (its map order is its own), read by hand.
record!(AuditEvent, "AuditEvent", ["v1" => "audit_event.v1.avsc"], read by hand: datum::read_audit_event);
record!(CloudActivity, "CloudActivity", ["v1" => "cloud_activity.v1.avsc"]);
record!(ClusterObject, "ClusterObject", ["v1" => "cluster_object.v1.avsc"]);
record!(Detection, "Detection", ["v1" => "detection.v1.avsc", "v2" => "detection.v2.avsc"]);
record!(Alert, "Alert", ["v1" => "alert.v1.avsc", "v2" => "alert.v2.avsc", "v3" => "alert.v3.avsc", "v4" => "alert.v4.avsc"]);

/// The single-object headers (magic and fingerprint) of every shipped version of every record type, for fuzzing
/// the readers behind each of them.
pub fn version_headers() -> Vec<Vec<u8>> {
    fn of<T: Record>() -> Vec<Vec<u8>> {
        Codec::<T>::new().map(|codec| codec.versions.iter().map(|(_, f, _)| header(f)).collect()).unwrap_or_default()
    }
    // A new record type goes last: fuzz inputs pick a header by index.
    [
        of::<NodeEvent>(),
        of::<AuditEvent>(),
        of::<CloudActivity>(),
        of::<Detection>(),
        of::<Alert>(),
        of::<ClusterObject>(),
    ]
    .concat()
}

/// Encoder and decoder for one record type. Build once, share freely.
#[derive(Debug, Clone)]
pub struct Codec<T: Record> {
    versions: Vec<(&'static str, [u8; 8], Schema)>,
    _record: PhantomData<fn() -> T>,
}

impl<T: Record> Codec<T> {
    pub fn new() -> Result<Self, CodecError> {
        // Older versions are read by apache-avro, which allocates what a length prefix says up to this bound
        // (512 MB by default): no record on a topic is near it, so a damaged one must not be either.
        apache_avro::max_allocation_bytes(MAX_AVRO_ALLOCATION_BYTES);
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
        let mut out = header(fingerprint);
        if record.write_current_datum(&mut out) {
            return Ok(out);
        }
        encode_with(record, schema, out)
    }

    /// Encodes with the current schema through apache-avro's serde path, never by hand; the reference the
    /// hand-written encoders are tested against.
    pub fn encode_generic(&self, record: &T) -> Result<Vec<u8>, CodecError> {
        let (_, fingerprint, schema) = self.versions.last().expect("every record ships at least one schema");
        encode_with(record, schema, header(fingerprint))
    }

    /// Encodes with an older shipped schema; used by compatibility tests and golden fixtures.
    pub fn encode_version(&self, record: &T, version: &str) -> Result<Vec<u8>, CodecError> {
        let (_, fingerprint, schema) = self
            .versions
            .iter()
            .find(|(v, _, _)| *v == version)
            .ok_or_else(|| CodecError::UnknownFingerprint { record: T::NAME, fingerprint: version.to_owned() })?;
        encode_with(record, schema, header(fingerprint))
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
        let position = self.versions.iter().position(|(_, f, _)| f == fingerprint).ok_or_else(|| {
            CodecError::UnknownFingerprint {
                record: T::NAME,
                fingerprint: fingerprint.iter().map(|b| format!("{b:02x}")).collect(),
            }
        })?;
        if position == self.versions.len() - 1
            && let Some(read) = T::read_current_datum(&bytes[HEADER_LEN..])
        {
            return read.map_err(|source| CodecError::Datum { record: T::NAME, source });
        }
        let writer = &self.versions[position].2;
        datum::check_lengths(&bytes[HEADER_LEN..], writer)
            .map_err(|source| CodecError::Datum { record: T::NAME, source })?;
        let avro = |source| CodecError::Avro { record: T::NAME, source: Box::new(source) };
        let mut datum = Cursor::new(&bytes[HEADER_LEN..]);
        let value = from_avro_datum(writer, &mut datum, Some(self.current_schema())).map_err(avro)?;
        from_value::<T>(&value).map_err(avro)
    }
}

/// The most apache-avro allocates for one value it reads: the bus's record bound is 1 MB.
const MAX_AVRO_ALLOCATION_BYTES: usize = 16 * 1024 * 1024;

fn fingerprint_of(schema: &Schema) -> [u8; 8] {
    let digest = schema.fingerprint::<Rabin>();
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest.bytes[..8]);
    out
}

/// The single-object header, with room for a typical datum after it.
fn header(fingerprint: &[u8; 8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(fingerprint);
    out
}

fn encode_with<T: Record>(record: &T, schema: &Schema, mut out: Vec<u8>) -> Result<Vec<u8>, CodecError> {
    let avro = |source| CodecError::Avro { record: T::NAME, source: Box::new(source) };
    let value = to_value(record).map_err(avro)?.resolve(schema).map_err(avro)?;
    out.extend_from_slice(&to_avro_datum(schema, value).map_err(avro)?);
    Ok(out)
}

#[cfg(test)]
mod tests;

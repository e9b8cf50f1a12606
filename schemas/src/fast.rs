//! The decoding fast path: an Avro datum read straight into the Rust type through serde,
//! driven by the schema, without building apache-avro's `Value` tree first. It applies
//! only when the message was written with the reader's own schema (no resolution to do),
//! the common case; anything it does not take (another writer version, a schema feature
//! it does not know, a malformed datum) goes the general way, through apache-avro, which
//! then decides — so errors are the same either way, and a test holds the two paths to
//! the same result on every schema's samples.

use std::collections::HashMap;

use apache_avro::schema::{Name, ResolvedSchema};
use apache_avro::Schema;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

/// A reader schema ready for the fast path: the schema and its named types.
#[derive(Debug)]
pub(crate) struct Plan {
    root: Schema,
    names: HashMap<Name, Schema>,
}

impl Plan {
    /// `None` when the schema's named types do not resolve (the general path then).
    pub(crate) fn new(schema: &Schema) -> Option<Self> {
        let resolved = ResolvedSchema::try_from(schema).ok()?;
        let names = resolved
            .get_names()
            .iter()
            .map(|(n, s)| (n.clone(), (*s).clone()))
            .collect();
        Some(Self {
            root: schema.clone(),
            names,
        })
    }

    /// The datum `body` (after the 5-byte header) as a `T`; `None` when the fast path does
    /// not take it (see the module's documentation).
    pub(crate) fn decode<'de, T: de::Deserialize<'de>>(&self, body: &'de [u8]) -> Option<T> {
        let mut input = Input { buf: body, pos: 0 };
        let value = T::deserialize(Datum {
            input: &mut input,
            schema: &self.root,
            plan: self,
        })
        .ok()?;
        (input.pos == body.len()).then_some(value)
    }

    fn named<'a>(&'a self, schema: &'a Schema) -> Result<&'a Schema, Unsupported> {
        match schema {
            Schema::Ref { name } => self.names.get(name).ok_or(Unsupported),
            s => Ok(s),
        }
    }
}

/// Why the fast path stopped; the general path says what is wrong, if anything.
#[derive(Debug)]
struct Unsupported;

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not for the fast path")
    }
}

impl std::error::Error for Unsupported {}

impl de::Error for Unsupported {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Unsupported
    }
}

type R<T> = Result<T, Unsupported>;

struct Input<'de> {
    buf: &'de [u8],
    pos: usize,
}

impl<'de> Input<'de> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self) -> R<u8> {
        let b = *self.buf.get(self.pos).ok_or(Unsupported)?;
        self.pos += 1;
        Ok(b)
    }

    /// A zig-zag variable-length long (at most 10 bytes).
    fn long(&mut self) -> R<i64> {
        let mut n: u64 = 0;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err(Unsupported);
            }
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((n >> 1) as i64 ^ -((n & 1) as i64));
            }
        }
        Err(Unsupported)
    }

    fn int(&mut self) -> R<i32> {
        i32::try_from(self.long()?).map_err(|_| Unsupported)
    }

    fn take(&mut self, len: usize) -> R<&'de [u8]> {
        if len > self.remaining() {
            return Err(Unsupported);
        }
        let s = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(s)
    }

    fn length(&mut self) -> R<usize> {
        usize::try_from(self.long()?).map_err(|_| Unsupported)
    }

    /// The next block's item count of an array or map (0: the end); each item takes at
    /// least a byte here, so a count beyond what is left is refused before any work.
    fn block(&mut self) -> R<usize> {
        let count = self.long()?;
        let count = if count < 0 {
            let _block_bytes = self.long()?;
            count.checked_neg().ok_or(Unsupported)?
        } else {
            count
        };
        let count = usize::try_from(count).map_err(|_| Unsupported)?;
        if count > self.remaining() {
            return Err(Unsupported);
        }
        Ok(count)
    }
}

/// One value of `schema` at the input's position.
struct Datum<'a, 'de> {
    input: &'a mut Input<'de>,
    schema: &'a Schema,
    plan: &'a Plan,
}

impl<'de> de::Deserializer<'de> for Datum<'_, 'de> {
    type Error = Unsupported;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        let schema = self.plan.named(self.schema)?;
        match schema {
            Schema::Null => visitor.visit_unit(),
            Schema::Boolean => match self.input.byte()? {
                0 => visitor.visit_bool(false),
                1 => visitor.visit_bool(true),
                _ => Err(Unsupported),
            },
            Schema::Int | Schema::Date | Schema::TimeMillis => visitor.visit_i32(self.input.int()?),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => visitor.visit_i64(self.input.long()?),
            Schema::Float => {
                let b = self.input.take(4)?;
                visitor.visit_f32(f32::from_le_bytes(b.try_into().map_err(|_| Unsupported)?))
            }
            Schema::Double => {
                let b = self.input.take(8)?;
                visitor.visit_f64(f64::from_le_bytes(b.try_into().map_err(|_| Unsupported)?))
            }
            Schema::Bytes => {
                let len = self.input.length()?;
                visitor.visit_borrowed_bytes(self.input.take(len)?)
            }
            Schema::String => {
                let len = self.input.length()?;
                let s = std::str::from_utf8(self.input.take(len)?).map_err(|_| Unsupported)?;
                visitor.visit_borrowed_str(s)
            }
            Schema::Array(a) => visitor.visit_seq(Items {
                input: self.input,
                item: &a.items,
                plan: self.plan,
                left: 0,
                done: false,
            }),
            Schema::Map(m) => visitor.visit_map(Entries {
                input: self.input,
                value: &m.types,
                plan: self.plan,
                left: 0,
                done: false,
            }),
            Schema::Union(u) => {
                let i = usize::try_from(self.input.long()?).map_err(|_| Unsupported)?;
                let branch = u.variants().get(i).ok_or(Unsupported)?;
                Datum {
                    input: self.input,
                    schema: branch,
                    plan: self.plan,
                }
                .deserialize_any(visitor)
            }
            Schema::Record(r) => visitor.visit_map(Fields {
                input: self.input,
                fields: &r.fields,
                plan: self.plan,
                next: 0,
            }),
            Schema::Enum(e) => {
                let i = usize::try_from(self.input.long()?).map_err(|_| Unsupported)?;
                visitor.visit_str(e.symbols.get(i).ok_or(Unsupported)?)
            }
            // Fixed, decimals, UUIDs, durations: none in our schemas; the general path.
            _ => Err(Unsupported),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> R<V::Value> {
        match self.plan.named(self.schema)? {
            Schema::Union(u) => {
                let i = usize::try_from(self.input.long()?).map_err(|_| Unsupported)?;
                match u.variants().get(i).ok_or(Unsupported)? {
                    Schema::Null => visitor.visit_none(),
                    branch => visitor.visit_some(Datum {
                        input: self.input,
                        schema: branch,
                        plan: self.plan,
                    }),
                }
            }
            Schema::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> R<V::Value> {
        match self.plan.named(self.schema)? {
            Schema::Enum(e) => {
                let i = usize::try_from(self.input.long()?).map_err(|_| Unsupported)?;
                let symbol: &str = e.symbols.get(i).ok_or(Unsupported)?;
                visitor.visit_enum(symbol.into_deserializer())
            }
            _ => Err(Unsupported),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// Whether an array or map has another item, reading the next block's count when the
/// current block is used up (`left` items left in it; `done` once the empty block came).
fn next_item(input: &mut Input<'_>, left: &mut usize, done: &mut bool) -> R<bool> {
    if *done {
        return Ok(false);
    }
    if *left == 0 {
        *left = input.block()?;
        if *left == 0 {
            *done = true;
            return Ok(false);
        }
    }
    *left -= 1;
    Ok(true)
}

/// An array's items, block by block.
struct Items<'a, 'de> {
    input: &'a mut Input<'de>,
    item: &'a Schema,
    plan: &'a Plan,
    left: usize,
    done: bool,
}

impl<'de> de::SeqAccess<'de> for Items<'_, 'de> {
    type Error = Unsupported;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> R<Option<T::Value>> {
        if !next_item(self.input, &mut self.left, &mut self.done)? {
            return Ok(None);
        }
        seed.deserialize(Datum {
            input: self.input,
            schema: self.item,
            plan: self.plan,
        })
        .map(Some)
    }
}

/// A map's entries, block by block.
struct Entries<'a, 'de> {
    input: &'a mut Input<'de>,
    value: &'a Schema,
    plan: &'a Plan,
    left: usize,
    done: bool,
}

impl<'de> de::MapAccess<'de> for Entries<'_, 'de> {
    type Error = Unsupported;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> R<Option<K::Value>> {
        if !next_item(self.input, &mut self.left, &mut self.done)? {
            return Ok(None);
        }
        seed.deserialize(Datum {
            input: self.input,
            schema: &Schema::String,
            plan: self.plan,
        })
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> R<V::Value> {
        seed.deserialize(Datum {
            input: self.input,
            schema: self.value,
            plan: self.plan,
        })
    }
}

/// A record's fields, in the schema's order, named.
struct Fields<'a, 'de> {
    input: &'a mut Input<'de>,
    fields: &'a [apache_avro::schema::RecordField],
    plan: &'a Plan,
    next: usize,
}

impl<'de> de::MapAccess<'de> for Fields<'_, 'de> {
    type Error = Unsupported;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> R<Option<K::Value>> {
        match self.fields.get(self.next) {
            Some(f) => seed.deserialize(f.name.as_str().into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> R<V::Value> {
        let field = self.fields.get(self.next).ok_or(Unsupported)?;
        self.next += 1;
        seed.deserialize(Datum {
            input: self.input,
            schema: &field.schema,
            plan: self.plan,
        })
    }
}

//! The config keys a type reads: its struct fields, found by deserialising it from a recorder
//! that answers every field with a stand-in value and writes down each struct's field names.
//! [`ClassConfig::parse`](crate::ClassConfig::parse) compares them with the keys the class
//! declares, so a key read but never declared (silently defaulted, since the host passes only
//! declared keys) is an error the author sees at once.

use std::cell::RefCell;
use std::fmt;

use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

/// Each struct `T` reads, as (the path of field names leading to it, "" for `T` itself; its
/// fields). A type the recorder cannot answer (an untagged enum, a custom parser) ends the walk
/// early: what was found before stands, so nothing is ever reported that `T` does not read.
pub(crate) fn struct_fields<T: DeserializeOwned>() -> Vec<(String, &'static [&'static str])> {
    let found = RefCell::new(Vec::new());
    let _ = T::deserialize(Recorder { path: String::new(), found: &found });
    found.into_inner()
}

type Found = RefCell<Vec<(String, &'static [&'static str])>>;

/// Ends the walk where a type needs more than a stand-in value.
#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stop")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

struct Recorder<'a> {
    path: String,
    found: &'a Found,
}

impl<'a> Recorder<'a> {
    fn field(&self, name: &str) -> Recorder<'a> {
        let path = if self.path.is_empty() { name.to_owned() } else { format!("{}.{name}", self.path) };
        Recorder { path, found: self.found }
    }
}

/// The fields of one struct, each answered by a recorder one level down.
struct Fields<'a> {
    recorder: Recorder<'a>,
    fields: &'static [&'static str],
    next: usize,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Stop> {
        let Some(name) = self.fields.get(self.next) else { return Ok(None) };
        let key: StrDeserializer<'_, Stop> = name.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        let name = self.fields[self.next];
        self.next += 1;
        seed.deserialize(self.recorder.field(name))
    }
}

/// No items, no entries.
struct Empty;

impl<'de> de::SeqAccess<'de> for Empty {
    type Error = Stop;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, _: T) -> Result<Option<T::Value>, Stop> {
        Ok(None)
    }
}

impl<'de> de::MapAccess<'de> for Empty {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, _: K) -> Result<Option<K::Value>, Stop> {
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }
}

/// An enum answered with its first variant.
struct FirstVariant<'a> {
    recorder: Recorder<'a>,
    variant: &'static str,
}

impl<'de, 'a> de::EnumAccess<'de> for FirstVariant<'a> {
    type Error = Stop;
    type Variant = Recorder<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Recorder<'a>), Stop> {
        let name: StrDeserializer<'_, Stop> = self.variant.into_deserializer();
        Ok((seed.deserialize(name)?, self.recorder))
    }
}

impl<'de> de::VariantAccess<'de> for Recorder<'_> {
    type Error = Stop;

    fn unit_variant(self) -> Result<(), Stop> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Stop> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_seq(Empty)
    }

    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_map(Fields { recorder: self, fields, next: 0 })
    }
}

macro_rules! stand_in {
    ($($method:ident => $visit:ident($($value:expr)?)),+ $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
                visitor.$visit($($value)?)
            }
        )+
    };
}

impl<'de> de::Deserializer<'de> for Recorder<'_> {
    type Error = Stop;

    stand_in! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_u64(1),
        deserialize_i16 => visit_u64(1),
        deserialize_i32 => visit_u64(1),
        deserialize_i64 => visit_u64(1),
        deserialize_u8 => visit_u64(1),
        deserialize_u16 => visit_u64(1),
        deserialize_u32 => visit_u64(1),
        deserialize_u64 => visit_u64(1),
        deserialize_f32 => visit_f64(1.0),
        deserialize_f64 => visit_f64(1.0),
        deserialize_char => visit_char('a'),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
        deserialize_bytes => visit_bytes(&[]),
        deserialize_byte_buf => visit_bytes(&[]),
        deserialize_option => visit_none(),
        deserialize_unit => visit_unit(),
        deserialize_seq => visit_seq(Empty),
        deserialize_map => visit_map(Empty),
        deserialize_identifier => visit_str(""),
        deserialize_ignored_any => visit_unit(),
        deserialize_any => visit_unit(),
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_seq(Empty)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_seq(Empty)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.found.borrow_mut().push((self.path.clone(), fields));
        visitor.visit_map(Fields { recorder: self, fields, next: 0 })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        let variant = variants.first().ok_or(Stop)?;
        visitor.visit_enum(FirstVariant { recorder: self, variant })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::struct_fields;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum Optimizer {
        Adam,
        Sgd { momentum: f64 },
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Training {
        epochs: usize,
        rate: Option<f64>,
        optimizer: Optimizer,
        layers: Vec<u32>,
        #[serde(default)]
        patience: u8,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Sections {
        training: Training,
        model: Model,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Model {
        name: String,
        extra: serde_json::Value,
    }

    #[test]
    fn every_struct_and_its_fields_are_found_through_enums_options_and_lists() {
        assert_eq!(
            struct_fields::<Sections>(),
            [
                ("".to_owned(), &["training", "model"][..]),
                ("training".to_owned(), &["epochs", "rate", "optimizer", "layers", "patience"][..]),
                ("model".to_owned(), &["name", "extra"][..]),
            ]
        );
    }
}

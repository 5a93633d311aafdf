//! The engine's stores, found by schema and name.
//!
//! A store is found with the two names as the caller holds them, with no copy of either, so
//! the lookup every write and read makes allocates nothing. Iteration runs in (schema, name)
//! order, which keeps everything built from it (images, digests, listings) the same on every
//! replica.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::store::Store;

/// A store behind its lock. The `Arc` inside lets a snapshot capture the store by reference;
/// a write to a captured store copies it first (`Arc::make_mut`), once per capture.
pub type SharedStore = Arc<RwLock<Arc<Store>>>;

/// Every store, by schema, then name. A schema is present only while it holds a store.
#[derive(Default)]
pub struct Catalog {
    by_schema: BTreeMap<String, BTreeMap<String, SharedStore>>,
}

impl Catalog {
    /// The store `name` of `schema`, if there is one.
    pub fn get(&self, schema: &str, name: &str) -> Option<&SharedStore> {
        self.by_schema.get(schema)?.get(name)
    }

    /// Whether `schema` holds a store `name`.
    pub fn contains(&self, schema: &str, name: &str) -> bool {
        self.get(schema, name).is_some()
    }

    /// Adds the store `make` makes as `name` of `schema`, unless there is one already (which
    /// is left as it is, and `make` is not called).
    pub fn insert_if_absent(&mut self, schema: &str, name: &str, make: impl FnOnce() -> SharedStore) {
        let names = self.by_schema.entry(schema.to_owned()).or_default();
        if !names.contains_key(name) {
            names.insert(name.to_owned(), make());
        }
    }

    /// Adds `store` as `name` of `schema`; the store it replaces, if there was one.
    pub fn insert(&mut self, schema: String, name: String, store: SharedStore) -> Option<SharedStore> {
        self.by_schema.entry(schema).or_default().insert(name, store)
    }

    /// Takes the store `name` out of `schema`, if there is one.
    pub fn remove(&mut self, schema: &str, name: &str) -> Option<SharedStore> {
        let names = self.by_schema.get_mut(schema)?;
        let removed = names.remove(name);
        if names.is_empty() {
            self.by_schema.remove(schema);
        }
        removed
    }

    /// Takes every store of `schema` out; them, in name order.
    pub fn remove_schema(&mut self, schema: &str) -> Vec<SharedStore> {
        self.by_schema.remove(schema).map(|names| names.into_values().collect()).unwrap_or_default()
    }

    /// The stores of `schema` with their names, in name order.
    pub fn in_schema<'a>(&'a self, schema: &str) -> impl Iterator<Item = (&'a str, &'a SharedStore)> + 'a {
        self.by_schema.get(schema).into_iter().flatten().map(|(name, s)| (name.as_str(), s))
    }

    /// Every store with its schema and name, in (schema, name) order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &SharedStore)> {
        self.by_schema
            .iter()
            .flat_map(|(schema, names)| names.iter().map(move |(name, s)| (schema.as_str(), name.as_str(), s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> SharedStore {
        Arc::new(RwLock::new(Arc::new(Store::new(2, &[], &[]))))
    }

    fn names(c: &Catalog) -> Vec<(String, String)> {
        c.iter().map(|(schema, name, _)| (schema.to_owned(), name.to_owned())).collect()
    }

    #[test]
    fn stores_are_found_by_both_names_and_listed_in_schema_then_name_order() {
        let mut c = Catalog::default();
        for (schema, name) in [("b", "x"), ("a", "z"), ("a", "y"), ("ab", "a")] {
            c.insert_if_absent(schema, name, store);
        }
        assert!(c.contains("a", "y") && c.contains("b", "x"));
        assert!(!c.contains("a", "x") && !c.contains("c", "x"));
        let expected = [("a", "y"), ("a", "z"), ("ab", "a"), ("b", "x")];
        assert_eq!(names(&c), expected.map(|(s, n)| (s.to_owned(), n.to_owned())));
        assert_eq!(c.in_schema("a").map(|(n, _)| n).collect::<Vec<_>>(), ["y", "z"]);
        assert_eq!(c.in_schema("c").count(), 0);
    }

    #[test]
    fn an_existing_store_is_kept_and_an_emptied_schema_disappears() {
        let mut c = Catalog::default();
        let first = store();
        c.insert("s".into(), "n".into(), first.clone());
        c.insert_if_absent("s", "n", || panic!("an existing store is never made again"));
        assert!(c.get("s", "n").is_some_and(|s| Arc::ptr_eq(s, &first)));
        assert!(c.remove("s", "n").is_some_and(|s| Arc::ptr_eq(&s, &first)));
        assert!(c.remove("s", "n").is_none());
        assert!(c.by_schema.is_empty());
        c.insert_if_absent("s", "a", store);
        c.insert_if_absent("s", "b", store);
        c.insert_if_absent("t", "a", store);
        assert_eq!(c.remove_schema("s").len(), 2);
        assert!(c.remove_schema("s").is_empty());
        assert_eq!(names(&c), [("t".to_owned(), "a".to_owned())]);
    }
}

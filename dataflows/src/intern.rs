//! String interning for per-worker state: products, categories and devices
//! are stored as `u32` ids inside users' and entities' state.
//!
//! Ids are never reused or forgotten: the table grows with the number of
//! distinct strings a worker has seen (products and categories of its users or
//! entities, devices), which is bounded by the catalogue, not by traffic.

use rustc_hash::FxHashMap;

/// The id of "no string" (a missing product or category).
pub const NONE: u32 = u32::MAX;

/// A two-way map between strings and dense `u32` ids.
#[derive(Debug, Default, Clone)]
pub struct Interner {
    ids: FxHashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    /// The id of `s`, assigning the next one if it is new.
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    /// The id of an optional string; [`NONE`] for `None`.
    pub fn intern_opt(&mut self, s: Option<&str>) -> u32 {
        s.map_or(NONE, |s| self.intern(s))
    }

    /// The string of an id.
    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    /// The string of an id, `None` for [`NONE`].
    pub fn name_opt(&self, id: u32) -> Option<&str> {
        (id != NONE).then(|| self.name(id))
    }
}

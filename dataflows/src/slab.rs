//! Dense slots with reuse: per-worker users and trend entities live in a
//! `Slab` and are named by their slot index in timers, logs and maps. A freed
//! slot is reused by the next insert, so the slab's size follows the number of
//! live keys, not the number ever seen.

/// A vector of optional values with a free list.
#[derive(Debug)]
pub struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { items: Vec::new(), free: Vec::new() }
    }
}

impl<T> Slab<T> {
    /// Stores `value` in a free slot; returns the slot.
    pub fn insert(&mut self, value: T) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.items[i] = Some(value);
                i
            }
            None => {
                self.items.push(Some(value));
                self.items.len() - 1
            }
        }
    }

    /// Takes the value out of `slot`, freeing it.
    pub fn remove(&mut self, slot: usize) -> Option<T> {
        let value = self.items.get_mut(slot)?.take()?;
        self.free.push(slot);
        Some(value)
    }

    /// The value in `slot`.
    pub fn get(&self, slot: usize) -> Option<&T> {
        self.items.get(slot)?.as_ref()
    }

    /// The value in `slot`, mutably.
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut T> {
        self.items.get_mut(slot)?.as_mut()
    }

    /// Every live value with its slot.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut T)> {
        self.items.iter_mut().enumerate().filter_map(|(i, v)| v.as_mut().map(|v| (i, v)))
    }

    /// Number of live values.
    pub fn len(&self) -> usize {
        self.items.len() - self.free.len()
    }

    /// Whether no value is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_slots_are_reused() {
        let mut s = Slab::default();
        let a = s.insert("a");
        let b = s.insert("b");
        assert_eq!(s.remove(a), Some("a"));
        assert_eq!(s.remove(a), None);
        assert_eq!(s.insert("c"), a);
        assert_eq!((s.get(b), s.len()), (Some(&"b"), 2));
    }
}

//! The network state of a sink's devices, by device index. A shard's indices are one
//! contiguous range, so the devices live in a vector from the lowest index seen: a message
//! finds its device with one memory access and no hashing (a hash map cost two cache
//! misses per message here, most of what impairing a message cost). Indices too far from
//! the others (not expected) go into a map.

use std::collections::HashMap;

/// Most slots the vector spans (above the largest shard).
const MAX_SPAN: u64 = 1 << 17;

/// Devices by index.
pub(super) struct DevTable<T> {
    base: u64,
    slots: Vec<Option<T>>,
    far: HashMap<u64, T>,
}

impl<T> Default for DevTable<T> {
    fn default() -> Self {
        Self {
            base: 0,
            slots: Vec::new(),
            far: HashMap::new(),
        }
    }
}

impl<T> DevTable<T> {
    fn slot(&self, index: u64) -> Option<usize> {
        index
            .checked_sub(self.base)
            .filter(|o| *o < MAX_SPAN)
            .map(|o| o as usize)
    }

    /// The device at `index`.
    pub(super) fn get(&self, index: u64) -> Option<&T> {
        match self.slot(index) {
            Some(i) => self.slots.get(i)?.as_ref(),
            None => self.far.get(&index),
        }
    }

    /// The device at `index`, to change.
    pub(super) fn get_mut(&mut self, index: u64) -> Option<&mut T> {
        match self.slot(index) {
            Some(i) => self.slots.get_mut(i)?.as_mut(),
            None => self.far.get_mut(&index),
        }
    }

    /// The device at `index`, made by `make` if there is none.
    pub(super) fn get_or_insert_with(&mut self, index: u64, make: impl FnOnce() -> T) -> &mut T {
        if self.slots.is_empty() && self.far.is_empty() {
            self.base = index;
        } else if index < self.base {
            let shift = self.base - index;
            if shift + (self.slots.len() as u64) < MAX_SPAN {
                // A lower index than any before: the vector starts there now.
                self.slots
                    .splice(0..0, std::iter::repeat_with(|| None).take(shift as usize));
                self.base = index;
            }
        }
        match self.slot(index) {
            Some(i) => {
                if self.slots.len() <= i {
                    self.slots.resize_with(i + 1, || None);
                }
                let s = &mut self.slots[i];
                s.get_or_insert_with(make)
            }
            None => self.far.entry(index).or_insert_with(make),
        }
    }

    /// Takes the device at `index` out.
    pub(super) fn remove(&mut self, index: u64) -> Option<T> {
        match self.slot(index) {
            Some(i) => self.slots.get_mut(i)?.take(),
            None => self.far.remove(&index),
        }
    }

    /// The indices of every device.
    pub(super) fn indices(&self) -> Vec<u64> {
        let near = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .map(|(i, _)| self.base + i as u64);
        near.chain(self.far.keys().copied()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_it_keeps_below_above_and_far_away() {
        let mut t: DevTable<u64> = DevTable::default();
        for i in [500u64, 700, 499, 10, 1 << 40] {
            *t.get_or_insert_with(i, || i * 2) += 0;
        }
        for i in [500u64, 700, 499, 10, 1 << 40] {
            assert_eq!(t.get(i), Some(&(i * 2)), "{i}");
        }
        assert_eq!(t.get(501), None);
        assert_eq!(t.remove(499), Some(998));
        assert_eq!(t.get(499), None);
        let mut idx = t.indices();
        idx.sort_unstable();
        assert_eq!(idx, [10, 500, 700, 1 << 40]);
    }
}

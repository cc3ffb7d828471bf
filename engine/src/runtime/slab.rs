//! A slab of per-connection state with generations, so stale completions for
//! a reused slot are recognised.

/// One slot.
#[derive(Debug)]
enum Entry<T> {
    Occupied { generation: u32, value: T },
    Vacant { generation: u32, next_free: u32 },
}

/// Slots indexed by `u32`, reused in LIFO order; each reuse bumps the
/// slot's 24-bit generation.
#[derive(Debug)]
pub struct Slab<T> {
    entries: Vec<Entry<T>>,
    free_head: u32,
    len: usize,
}

const NONE: u32 = u32::MAX;

impl<T> Slab<T> {
    /// An empty slab with room for `capacity` entries reserved (virtual
    /// memory only: pages are touched when used).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Vec::with_capacity(capacity),
            free_head: NONE,
            len: 0,
        }
    }

    /// Number of occupied slots.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no slot is occupied.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Insert, returning (slot, generation).
    pub fn insert(&mut self, value: T) -> (u32, u32) {
        self.len += 1;
        if self.free_head != NONE {
            let slot = self.free_head;
            let e = &mut self.entries[slot as usize];
            let Entry::Vacant {
                generation,
                next_free,
            } = *e
            else {
                unreachable!("free list points at an occupied slot")
            };
            let generation = (generation + 1) & 0x00FF_FFFF;
            self.free_head = next_free;
            *e = Entry::Occupied { generation, value };
            (slot, generation)
        } else {
            let slot = self.entries.len() as u32;
            self.entries.push(Entry::Occupied {
                generation: 0,
                value,
            });
            (slot, 0)
        }
    }

    /// The value at `slot` if its generation matches.
    pub fn get(&self, slot: u32, generation: u32) -> Option<&T> {
        match self.entries.get(slot as usize) {
            Some(Entry::Occupied {
                generation: g,
                value,
            }) if *g == generation => Some(value),
            _ => None,
        }
    }

    /// The value at `slot` if its generation matches, mutably.
    pub fn get_mut(&mut self, slot: u32, generation: u32) -> Option<&mut T> {
        match self.entries.get_mut(slot as usize) {
            Some(Entry::Occupied {
                generation: g,
                value,
            }) if *g == generation => Some(value),
            _ => None,
        }
    }

    /// The value at `slot` whatever its generation, with the generation.
    pub fn get_any_mut(&mut self, slot: u32) -> Option<(u32, &mut T)> {
        match self.entries.get_mut(slot as usize) {
            Some(Entry::Occupied { generation, value }) => Some((*generation, value)),
            _ => None,
        }
    }

    /// Remove the value at `slot` (generation must match).
    pub fn remove(&mut self, slot: u32, generation: u32) -> Option<T> {
        let e = self.entries.get_mut(slot as usize)?;
        match e {
            Entry::Occupied { generation: g, .. } if *g == generation => {}
            _ => return None,
        }
        let old = std::mem::replace(
            e,
            Entry::Vacant {
                generation,
                next_free: self.free_head,
            },
        );
        self.free_head = slot;
        self.len -= 1;
        match old {
            Entry::Occupied { value, .. } => Some(value),
            Entry::Vacant { .. } => unreachable!(),
        }
    }

    /// Occupied slots with their generations.
    pub fn slots(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                Entry::Occupied { generation, .. } => Some((i as u32, *generation)),
                Entry::Vacant { .. } => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_bumps_generation_and_stale_lookups_fail() {
        let mut s = Slab::with_capacity(4);
        let (a, ga) = s.insert("a");
        let (b, _) = s.insert("b");
        assert_eq!(s.len(), 2);
        assert_eq!(s.remove(a, ga), Some("a"));
        let (c, gc) = s.insert("c");
        assert_eq!(c, a);
        assert_ne!(gc, ga);
        assert!(s.get_mut(a, ga).is_none());
        assert_eq!(s.get_mut(c, gc).copied(), Some("c"));
        assert_eq!(s.slots().count(), 2);
        assert!(s.remove(b, 99).is_none());
    }
}

//! Newtyped addresses and address ranges.
//!
//! Physical addresses ([`Pa`]) and intermediate physical addresses ([`Ipa`]) are
//! distinct types so that a stage-2 input can never be confused with a stage-2
//! output. [`MemRange`] is the validated form of a host-supplied `(base, size)`:
//! it cannot overflow.

use core::fmt;

/// Size of a translation granule and of an ownership-tracked page.
pub const PAGE_SIZE: u64 = 4096;
/// `log2(PAGE_SIZE)`.
pub const PAGE_SHIFT: u32 = 12;

/// A physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pa(pub u64);

/// An intermediate physical address: the input of a stage-2 translation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ipa(pub u64);

macro_rules! addr_common {
    ($t:ident, $name:literal) => {
        impl $t {
            /// The raw value.
            pub const fn raw(self) -> u64 {
                self.0
            }
            /// Whether the address is aligned to `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }
            /// Rounds down to a multiple of `align` (a power of two).
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 & !(align - 1))
            }
            /// Adds `off`, or `None` on overflow.
            pub const fn checked_add(self, off: u64) -> Option<Self> {
                match self.0.checked_add(off) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($name, "({:#x})"), self.0)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}
addr_common!(Pa, "Pa");

impl From<Pa> for u64 {
    fn from(pa: Pa) -> u64 {
        pa.0
    }
}
addr_common!(Ipa, "Ipa");

/// A physical page frame number: `Pa >> 12`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Pfn(pub u64);

/// A guest frame number: `Ipa >> 12` in a VM's address space.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Gfn(pub u64);

impl Pfn {
    /// The page's first byte, or `None` if the frame number is too large.
    pub const fn pa(self) -> Option<Pa> {
        if self.0 > (u64::MAX >> PAGE_SHIFT) {
            return None;
        }
        Some(Pa(self.0 << PAGE_SHIFT))
    }
    /// The frame holding `pa`.
    pub const fn of(pa: Pa) -> Pfn {
        Pfn(pa.0 >> PAGE_SHIFT)
    }
}

impl Gfn {
    /// The frame's first IPA, or `None` if the frame number is too large.
    pub const fn ipa(self) -> Option<Ipa> {
        if self.0 > (u64::MAX >> PAGE_SHIFT) {
            return None;
        }
        Some(Ipa(self.0 << PAGE_SHIFT))
    }
}

/// A non-empty range of addresses `[base, base + size)` whose end does not
/// overflow. The end may be `2^64` exactly only in the sense that `end()` is
/// never computed past `u64::MAX`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MemRange {
    base: u64,
    size: u64,
}

impl MemRange {
    /// Validates a range: `size > 0` and `base + size` does not overflow.
    pub const fn new(base: u64, size: u64) -> Option<MemRange> {
        if size == 0 {
            return None;
        }
        match base.checked_add(size) {
            Some(_) => Some(MemRange { base, size }),
            None => None,
        }
    }

    /// The range `[start, end)`, if `start < end`.
    pub const fn from_bounds(start: u64, end: u64) -> Option<MemRange> {
        if start >= end {
            return None;
        }
        Some(MemRange {
            base: start,
            size: end - start,
        })
    }

    /// First address.
    pub const fn base(&self) -> u64 {
        self.base
    }
    /// Length in bytes.
    pub const fn size(&self) -> u64 {
        self.size
    }
    /// One past the last address.
    pub const fn end(&self) -> u64 {
        self.base + self.size
    }
    /// Whether `addr` lies inside.
    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < self.size
    }
    /// Whether `other` lies entirely inside.
    pub const fn contains_range(&self, other: &MemRange) -> bool {
        other.base >= self.base && other.end() <= self.end()
    }
    /// Whether the two ranges share at least one address.
    pub const fn overlaps(&self, other: &MemRange) -> bool {
        self.base < other.end() && other.base < self.end()
    }
    /// Whether base and size are multiples of `align` (a power of two).
    pub const fn is_aligned(&self, align: u64) -> bool {
        self.base & (align - 1) == 0 && self.size & (align - 1) == 0
    }
    /// The smallest range of whole `align`-sized blocks containing this one,
    /// or `None` if it would pass the top of the address space.
    pub const fn align_out(&self, align: u64) -> Option<MemRange> {
        let base = self.base & !(align - 1);
        match self.end().checked_add(align - 1) {
            Some(e) => MemRange::from_bounds(base, e & !(align - 1)),
            None => None,
        }
    }
}

impl fmt::Debug for MemRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.base, self.end())
    }
}

impl fmt::Display for MemRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A bounded set of disjoint ranges kept sorted by base, with no allocation:
/// the capacity is a const generic so the same code runs at EL2 and in tests.
#[derive(Clone, Copy, Debug)]
pub struct RangeSet<const N: usize> {
    ranges: [MemRange; N],
    len: usize,
}

/// Why a [`RangeSet`] refused an insertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeSetError {
    /// The set already holds its capacity of ranges.
    Full,
    /// The range overlaps one already in the set.
    Overlap,
    /// The range (or what describes it) is malformed: unaligned, wrapping.
    Malformed,
}

impl<const N: usize> Default for RangeSet<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> RangeSet<N> {
    /// An empty set.
    pub const fn new() -> Self {
        RangeSet {
            ranges: [MemRange { base: 0, size: 0 }; N],
            len: 0,
        }
    }

    /// Inserts a range that overlaps none already present.
    pub fn insert(&mut self, r: MemRange) -> Result<(), RangeSetError> {
        if self.iter().any(|x| x.overlaps(&r)) {
            return Err(RangeSetError::Overlap);
        }
        if self.len == N {
            return Err(RangeSetError::Full);
        }
        let pos = self
            .iter()
            .position(|x| x.base() > r.base())
            .unwrap_or(self.len);
        let mut i = self.len;
        while i > pos {
            self.ranges[i] = self.ranges[i - 1];
            i -= 1;
        }
        self.ranges[pos] = r;
        self.len += 1;
        Ok(())
    }

    /// The ranges, sorted by base.
    pub fn iter(&self) -> impl Iterator<Item = &MemRange> + '_ {
        self.ranges[..self.len].iter()
    }

    /// The range containing `addr`, if any.
    pub fn find(&self, addr: u64) -> Option<&MemRange> {
        self.iter().find(|r| r.contains(addr))
    }

    /// Whether any range overlaps `r`.
    pub fn overlaps(&self, r: &MemRange) -> bool {
        self.iter().any(|x| x.overlaps(r))
    }

    /// Number of ranges.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_reject_empty_and_overflow() {
        assert!(MemRange::new(0, 0).is_none());
        assert!(MemRange::new(u64::MAX, 1).is_none());
        assert!(MemRange::new(u64::MAX - 1, 1).is_some());
        assert!(MemRange::from_bounds(5, 5).is_none());
    }

    #[test]
    fn overlap_and_containment() {
        let a = MemRange::new(0x1000, 0x2000).unwrap();
        let b = MemRange::new(0x2fff, 1).unwrap();
        let c = MemRange::new(0x3000, 1).unwrap();
        assert!(a.overlaps(&b) && !a.overlaps(&c));
        assert!(a.contains(0x2fff) && !a.contains(0x3000));
        assert!(a.contains_range(&b) && !a.contains_range(&c));
        assert_eq!(
            MemRange::new(0x1234, 0x10).unwrap().align_out(0x1000),
            MemRange::new(0x1000, 0x1000)
        );
        assert_eq!(
            MemRange::new(u64::MAX - 4, 2).unwrap().align_out(0x1000),
            None
        );
    }

    #[test]
    fn range_set_keeps_order_and_refuses_overlap() {
        let mut s = RangeSet::<3>::new();
        s.insert(MemRange::new(0x5000, 0x1000).unwrap()).unwrap();
        s.insert(MemRange::new(0x1000, 0x1000).unwrap()).unwrap();
        assert_eq!(
            s.insert(MemRange::new(0x1800, 0x1000).unwrap()),
            Err(RangeSetError::Overlap)
        );
        s.insert(MemRange::new(0x3000, 0x1000).unwrap()).unwrap();
        assert_eq!(
            s.insert(MemRange::new(0x9000, 0x1000).unwrap()),
            Err(RangeSetError::Full)
        );
        let bases: [u64; 3] = core::array::from_fn(|i| s.iter().nth(i).unwrap().base());
        assert_eq!(bases, [0x1000, 0x3000, 0x5000]);
        assert_eq!(s.find(0x3fff).map(|r| r.base()), Some(0x3000));
        assert!(s.find(0x4000).is_none());
    }
}

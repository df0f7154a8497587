//! What the vCPU unit tests share.

use super::loaded::{GuestConfig, Loaded};
use crate::addr::{Gfn, Pa};
use crate::pgtable::Geometry;
use crate::vm::VmKind;

/// A loaded vCPU of a protected VM with a 40-bit IPA space and one MMIO
/// page at gfn `0x9000`: where the exit and timer tests start.
pub(super) fn loaded() -> Loaded {
    let mut l = Loaded::empty();
    assert!(l.mmio.add(Gfn(0x9000), 1));
    l.kind = VmKind::Protected;
    l.cfg = GuestConfig {
        vmid: 1,
        root: Pa(0),
        geometry: Geometry::stage2(40).expect("geometry"),
    };
    l.ipa_limit = 1 << 40;
    l
}

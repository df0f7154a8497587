//! The VM's ITS end to end, from inside the guest ([`crate::guest::its`]):
//! `its` enables LPIs on vCPU 0, sets the ITS's tables and queue up, maps
//! event [`ITS_EVENT`] of device [`ITS_DEVICE`] to LPI [`ITS_LPI`] in a
//! collection on vCPU 0, and asks the VMM for that MSI ([`testdev::MSI`]:
//! `KVM_SIGNAL_MSI`), which must be delivered and arrive as that LPI;
//! `its-int` makes the LPI pending with the ITS's `INT` command;
//! `its-discard` unmaps the event (`DISCARD`), after which the VMM's MSI is
//! blocked (`KVM_SIGNAL_MSI` returns 0) and no LPI arrives. Without an ITS
//! (the VMM's [`testdev::GIC`] word says) each prints a SKIP line.
//!
//! [`testdev::MSI`]: kcore_test_guest::testdev::MSI
//! [`testdev::GIC`]: kcore_test_guest::testdev::GIC

use crate::guest::its::{self, Command, gits, rd};
use crate::guest::runner::{Failed, TestResult, ensure, fail, skip};
use crate::guest::{cpu, gic, irq, testdev, timer};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use kcore_test_guest::gic::{ITS_DEVICE, ITS_EVENT, ITS_LPI};
use kcore_test_guest::testdev::{MSI, Width, msi_word};

/// The collection the LPI is in.
const COLLECTION: u16 = 0;
/// The LPI's priority (bits 7:2 of its property byte).
const PRIORITY: u8 = 0xA0;
/// How long the ITS may take over the commands it was given.
const QUEUE_MS: u64 = 1000;
/// How long an expected LPI may take.
const WAIT_MS: u64 = 2000;
/// How long `its-discard` waits for an LPI that must not come.
const QUIET_MS: u64 = 100;

/// `its` mapped the LPI (the later tests need it).
static READY: AtomicBool = AtomicBool::new(false);
/// vCPU 0's redistributor's processor number (the ITS's target).
static TARGET: AtomicU64 = AtomicU64::new(0);

/// LPIs [`ITS_LPI`] taken so far.
fn lpis() -> u32 {
    irq::ITS_LPIS.load(SeqCst)
}

/// Gives the ITS `commands` (`what`, for the FAIL line).
fn send(commands: &[Command], what: &str) -> TestResult {
    if let Err(s) = its::send(commands, QUEUE_MS) {
        fail!(
            "{what}: GITS_CREADR {:#x} did not reach GITS_CWRITER {:#x} within {QUEUE_MS} ms (GITS_CTLR {:#x})",
            s.creadr,
            s.cwriter,
            its::its_read32(gits::CTLR)
        );
    }
    Ok(())
}

/// Asks the VMM for the MSI of [`ITS_DEVICE`]'s [`ITS_EVENT`]; what its
/// `KVM_SIGNAL_MSI` returned (1 delivered, 0 blocked, `-errno`).
fn request_msi() -> i64 {
    testdev::write(MSI, Width::Double, msi_word(ITS_DEVICE, ITS_EVENT));
    testdev::read(MSI, Width::Double) as i64
}

/// Waits for the one LPI [`ITS_LPI`] that `what` made pending: exactly
/// one more than `before`, and no other interrupt than `unexpected` so far.
fn expect_lpi(before: u32, unexpected: u32, what: &str) -> TestResult {
    let came = irq::wait_until(|| lpis() > before, timer::deadline_after_ms(WAIT_MS));
    let others = irq::UNEXPECTED.load(SeqCst) - unexpected;
    ensure!(
        came,
        "no LPI {ITS_LPI} within {WAIT_MS} ms of {what} ({others} other interrupts, the last INTID {})",
        irq::LAST_UNEXPECTED.load(SeqCst)
    );
    ensure!(
        others == 0,
        "{others} interrupts besides LPI {ITS_LPI} after {what}, the last INTID {}",
        irq::LAST_UNEXPECTED.load(SeqCst)
    );
    let n = lpis() - before;
    ensure!(n == 1, "{n} LPIs {ITS_LPI} after {what}, expected 1");
    Ok(())
}

/// The previous tests mapped the LPI (a skip otherwise, as theirs).
macro_rules! require_its {
    () => {
        if !gic::has_its() {
            skip!("no ITS");
        }
        ensure!(READY.load(SeqCst), "the its test did not map LPI {ITS_LPI}");
    };
}

/// Enables LPIs in vCPU 0's redistributor: the property table (every LPI
/// disabled but [`ITS_LPI`]), the pending table, `EnableLPIs`. Returns its
/// processor number.
fn enable_lpis() -> Result<u64, Failed> {
    let typer = its::rd_read(rd::TYPER);
    ensure!(
        typer & rd::TYPER_PLPIS != 0,
        "GICR_TYPER {typer:#x}: no physical LPIs"
    );
    ensure!(
        typer >> 32 == cpu::mpidr() & 0xFF_FFFF,
        "the first redistributor's GICR_TYPER {typer:#x} is not vCPU 0's"
    );
    let ctlr = its::rd_read32(rd::CTLR);
    ensure!(
        ctlr & rd::CTLR_ENABLE_LPIS == 0,
        "GICR_CTLR {ctlr:#x}: LPIs on before the guest enabled them"
    );
    its::clear_properties();
    its::set_property(ITS_LPI, PRIORITY | its::PROP_ENABLE);
    cpu::publish_stores();
    let prop = its::property_table() | rd::ATTRS | u64::from(its::ID_BITS - 1);
    its::rd_write(rd::PROPBASER, prop);
    let back = its::rd_read(rd::PROPBASER);
    ensure!(
        back & rd::PROPBASER_ADDRESS == its::property_table()
            && back & rd::PROPBASER_IDBITS == u64::from(its::ID_BITS - 1),
        "GICR_PROPBASER: wrote {prop:#x}, read {back:#x}"
    );
    let pend = its::pending_table() | rd::ATTRS;
    its::rd_write(rd::PENDBASER, pend);
    let back = its::rd_read(rd::PENDBASER);
    ensure!(
        back & rd::PENDBASER_ADDRESS == its::pending_table(),
        "GICR_PENDBASER: wrote {pend:#x}, read {back:#x}"
    );
    its::rd_write32(rd::CTLR, ctlr | rd::CTLR_ENABLE_LPIS);
    let ctlr = its::rd_read32(rd::CTLR);
    ensure!(
        ctlr & rd::CTLR_ENABLE_LPIS != 0,
        "GICR_CTLR {ctlr:#x} after setting EnableLPIs"
    );
    Ok((typer >> 8) & 0xFFFF)
}

/// Gives the ITS its device and collection tables and command queue and
/// enables it.
fn enable_its() -> TestResult {
    let typer = its::its_read(gits::TYPER);
    let (device_bits, event_bits, itt_entry) = gits::typer_sizes(typer);
    ensure!(
        typer & gits::TYPER_PHYSICAL != 0 && typer & gits::TYPER_PTA == 0,
        "GITS_TYPER {typer:#x}: expected physical LPIs, targets by processor number"
    );
    ensure!(
        ITS_DEVICE >> device_bits == 0
            && its::EVENT_BITS <= event_bits
            && itt_entry << its::EVENT_BITS <= its::ITT_BYTES,
        "GITS_TYPER {typer:#x}: {device_bits} device id bits, {event_bits} event id bits, {itt_entry}-byte ITT entries"
    );
    let ctlr = its::its_read32(gits::CTLR);
    ensure!(
        ctlr & gits::CTLR_ENABLED == 0,
        "GITS_CTLR {ctlr:#x}: enabled before the guest enabled it"
    );
    let tables = [
        (
            gits::TYPE_DEVICE,
            its::device_table(),
            u64::from(ITS_DEVICE),
        ),
        (
            gits::TYPE_COLLECTION,
            its::collection_table(),
            u64::from(COLLECTION),
        ),
    ];
    for (n, (ty, table, id)) in (0..).zip(tables) {
        // Type and entry size are the ITS's (read-only), and so may be the
        // page size: what it says, as Linux reads them.
        let reg = its::its_read(gits::baser(n));
        let (got, entry, _) = gits::baser_fields(reg);
        ensure!(
            got == ty && (id + 1) * entry <= its::TABLE_BYTES,
            "GITS_BASER{n} {reg:#x}: type {got} (expected {ty}), {entry}-byte entries"
        );
        let value =
            gits::VALID | gits::ATTRS | ty << 56 | (entry - 1) << 48 | table | gits::PAGE_64K << 8;
        its::its_write(gits::baser(n), value);
        let back = its::its_read(gits::baser(n));
        let (_, _, page) = gits::baser_fields(back);
        ensure!(
            back & gits::VALID != 0
                && back & gits::BASER_ADDRESS == table
                && page == gits::PAGE_64K,
            "GITS_BASER{n}: wrote {value:#x}, read {back:#x}"
        );
    }
    let cbaser = gits::VALID | gits::ATTRS | its::queue() | (its::TABLE_BYTES / 4096 - 1);
    its::its_write(gits::CBASER, cbaser);
    let back = its::its_read(gits::CBASER);
    ensure!(
        back & gits::VALID != 0 && back & gits::CBASER_ADDRESS == its::queue(),
        "GITS_CBASER: wrote {cbaser:#x}, read {back:#x}"
    );
    its::its_write(gits::CWRITER, 0);
    its::reset_queue();
    let creadr = its::its_read(gits::CREADR);
    ensure!(creadr == 0, "GITS_CREADR {creadr:#x} with an empty queue");
    its::its_write32(gits::CTLR, ctlr | gits::CTLR_ENABLED);
    let ctlr = its::its_read32(gits::CTLR);
    ensure!(
        ctlr & gits::CTLR_ENABLED != 0,
        "GITS_CTLR {ctlr:#x} after setting Enabled"
    );
    Ok(())
}

/// LPIs on vCPU 0, the ITS set up and enabled, the event mapped (`MAPC`,
/// `MAPD`, `MAPTI`, `INV`, `INVALL`, `SYNC`); then the VMM's MSI for it is
/// delivered (`KVM_SIGNAL_MSI` returns 1) and arrives as exactly LPI
/// [`ITS_LPI`].
pub fn its() -> TestResult {
    if !gic::has_its() {
        skip!("no ITS");
    }
    gic::init();
    let target = enable_lpis()?;
    TARGET.store(target, SeqCst);
    enable_its()?;
    send(
        &[
            its::mapc(COLLECTION, target),
            its::mapd(ITS_DEVICE, its::itt(), its::EVENT_BITS),
            its::mapti(ITS_DEVICE, ITS_EVENT, ITS_LPI, COLLECTION),
            its::inv(ITS_DEVICE, ITS_EVENT),
            its::invall(COLLECTION),
            its::sync(target),
        ],
        "MAPC, MAPD, MAPTI, INV, INVALL, SYNC",
    )?;
    READY.store(true, SeqCst);
    let (before, unexpected) = (lpis(), irq::UNEXPECTED.load(SeqCst));
    let r = request_msi();
    ensure!(
        r == 1,
        "KVM_SIGNAL_MSI (device {ITS_DEVICE}, event {ITS_EVENT}) returned {r}, expected 1"
    );
    expect_lpi(before, unexpected, "the MSI")
}

/// The ITS's `INT` command for the mapped event makes LPI [`ITS_LPI`]
/// pending: it arrives, exactly once.
pub fn int() -> TestResult {
    require_its!();
    let target = TARGET.load(SeqCst);
    let (before, unexpected) = (lpis(), irq::UNEXPECTED.load(SeqCst));
    send(
        &[its::int(ITS_DEVICE, ITS_EVENT), its::sync(target)],
        "INT, SYNC",
    )?;
    expect_lpi(before, unexpected, "INT")
}

/// After `DISCARD` of the event, the VMM's MSI for it is blocked
/// (`KVM_SIGNAL_MSI` returns 0) and no LPI arrives within [`QUIET_MS`].
pub fn discard() -> TestResult {
    require_its!();
    let target = TARGET.load(SeqCst);
    send(
        &[its::discard(ITS_DEVICE, ITS_EVENT), its::sync(target)],
        "DISCARD, SYNC",
    )?;
    let (before, unexpected) = (lpis(), irq::UNEXPECTED.load(SeqCst));
    let r = request_msi();
    ensure!(
        r == 0,
        "KVM_SIGNAL_MSI after DISCARD returned {r}, expected 0 (blocked)"
    );
    let came = irq::wait_until(|| lpis() > before, timer::deadline_after_ms(QUIET_MS));
    let others = irq::UNEXPECTED.load(SeqCst) - unexpected;
    ensure!(
        !came && others == 0,
        "{} LPIs {ITS_LPI} and {others} other interrupts within {QUIET_MS} ms of the MSI after DISCARD",
        lpis() - before
    );
    Ok(())
}

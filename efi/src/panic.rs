//! What `kcore.efi` does when it panics: a bug of its own, or one of a crate
//! it calls on the firmware's data (the `acpi` crate's AML interpreter
//! panics on some malformed AML, `docs/security.md`, "ACPI machines").
//!
//! While boot services run, it says what it was doing ([`Phase`]) and what
//! panicked, and returns to the firmware with `EFI_ABORTED`, so the boot
//! manager goes on to its next boot option; KCore is not started and
//! nothing of the machine has been changed for the next option to see (the
//! ACPI tables KServ would read are installed only after every table and
//! the AML have been read). After `ExitBootServices` nothing can be printed
//! or returned to, and the machine is powered off, as when the tree cannot
//! be built ([`crate::app`]).
//!
//! The interpreter has no loop limit, and some AML makes it spin for ever
//! without calling out (a package's block ended under another operation:
//! `acpi` 6.1.1 and 7.0.0-pre1 alike). [`reading_aml`] bounds each reading
//! of the AML at [`AML_LIMIT`]: a timer event whose notification function
//! (at `TPL_CALLBACK`, interrupting the interpreter) stops `kcore.efi` the
//! same way. It lowers the TPL back to `TPL_APPLICATION` and calls `Exit`,
//! which returns to the boot manager from within the interrupted
//! application (EDK2's `Exit` long-jumps back to `StartImage`); the
//! interpreter's frames are abandoned, which leaks only memory the firmware
//! reclaims with the image. The boot manager's 5-minute watchdog, which
//! `kcore.efi` never disarms, stays the backstop.

use core::ffi::c_void;
use core::fmt;
use core::panic::PanicInfo;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering};
use core::time::Duration;

use uefi::boot::{EventType, TimerTrigger, Tpl};
use uefi::runtime::{self, ResetType};
use uefi::{Event, Status, boot, println};

/// What `kcore.efi` is doing, for the panic message.
#[derive(Clone, Copy)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Anything not named below.
    Loading = 0,
    /// Reading the ACPI tables' AML with the `acpi` crate's interpreter.
    Aml = 1,
}

static PHASE: AtomicU8 = AtomicU8::new(Phase::Loading as u8);
/// Set just before `ExitBootServices`.
static LEAVING: AtomicBool = AtomicBool::new(false);

/// To be called just before `ExitBootServices`: from then on a panic
/// cannot print or return to the firmware.
pub(crate) fn leaving_boot_services() {
    LEAVING.store(true, Ordering::Relaxed);
}

/// Records what `kcore.efi` is doing from now on.
fn set_phase(phase: Phase) {
    PHASE.store(phase as u8, Ordering::Relaxed);
}

fn doing() -> &'static str {
    match PHASE.load(Ordering::Relaxed) {
        1 => "reading the firmware's AML (the DSDT and SSDTs) with the acpi crate's interpreter",
        _ => "preparing KCore's boot",
    }
}

/// Says what stopped `kcore.efi` and returns to the firmware with
/// `EFI_ABORTED` while boot services run; powers off after that.
fn stop(what: fmt::Arguments<'_>) -> ! {
    if !LEAVING.load(Ordering::Relaxed) {
        println!("kcore.efi: stopped while {}: {what}", doing());
        println!("kcore.efi: KCore is not started; back to the firmware");
        // The firmware does not close an image's events at `Exit`: this
        // one must not fire into the unloaded application.
        close_aml_event();
        // SAFETY: boot services run; the application installed no protocol
        // and left no event that could call it after it is unloaded, and
        // `Exit` does not return on success.
        let _ = unsafe {
            boot::exit(
                boot::image_handle(),
                Status::ABORTED,
                0,
                core::ptr::null_mut(),
            )
        };
    }
    runtime::reset(ResetType::SHUTDOWN, Status::ABORTED, None)
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    // On one line: the message, then where.
    match info.location() {
        Some(at) => stop(format_args!("{} (a panic at {at})", info.message())),
        None => stop(format_args!("{} (a panic)", info.message())),
    }
}

/// How long one reading of the firmware's AML may take. QEMU's `virt`
/// DSDT (46 devices) reads in about 60 ms under TCG; a server's in
/// milliseconds.
pub(crate) const AML_LIMIT: Duration = Duration::from_secs(10);

/// The AML is being read, within [`AML_LIMIT`], until this is dropped.
pub(crate) struct ReadingAml(());

/// The time limit's timer event while the AML is read, else null.
static AML_EVENT: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// Marks the [`Phase::Aml`] and starts its time limit (module
/// documentation). Without a timer event (the firmware refused one) the
/// reading goes on under the boot manager's watchdog alone, as said on the
/// console.
pub(crate) fn reading_aml() -> ReadingAml {
    set_phase(Phase::Aml);
    // SAFETY: `aml_time_up` takes no context and may run at any point of
    // the reading (it never returns into it); the event is closed when the
    // reading ends or `kcore.efi` stops, whichever comes first.
    let event = unsafe {
        boot::create_event(
            EventType::TIMER | EventType::NOTIFY_SIGNAL,
            Tpl::CALLBACK,
            Some(aml_time_up),
            None,
        )
    };
    match event {
        Ok(e) => {
            let armed = boot::set_timer(&e, TimerTrigger::Relative(AML_LIMIT));
            AML_EVENT.store(e.as_ptr(), Ordering::SeqCst);
            if let Err(err) = armed {
                close_aml_event();
                println!("kcore.efi: no time limit on reading the AML (the timer: {err})");
            }
        }
        Err(err) => println!("kcore.efi: no time limit on reading the AML (no timer event: {err})"),
    }
    ReadingAml(())
}

/// Closes the time limit's event, if there is one.
fn close_aml_event() {
    let ptr = AML_EVENT.swap(core::ptr::null_mut(), Ordering::SeqCst);
    // SAFETY: a non-null pointer is an event `reading_aml` created and
    // nothing closed yet (the swap takes it once).
    if let Some(e) = unsafe { Event::from_ptr(ptr) } {
        let _ = boot::close_event(e);
    }
}

impl Drop for ReadingAml {
    fn drop(&mut self) {
        close_aml_event();
        set_phase(Phase::Loading);
    }
}

/// The AML ran past [`AML_LIMIT`]. Runs at `TPL_CALLBACK` in the middle of
/// the interpreter, which it never returns to.
unsafe extern "efiapi" fn aml_time_up(_event: Event, _context: Option<NonNull<c_void>>) {
    if let Some(st) = uefi::table::system_table_raw() {
        // SAFETY: the firmware's system table, valid while boot services
        // run (they do: the event was created with them).
        let bs = unsafe { st.as_ref() }.boot_services;
        if !bs.is_null() {
            // SAFETY: as above, the firmware's boot services table.
            let restore_tpl = unsafe { (*bs).restore_tpl };
            // SAFETY: the notification runs at TPL_CALLBACK over the
            // application's TPL_APPLICATION; lowering to it is what
            // returning would do. `Exit`, which follows, must be called at
            // TPL_CALLBACK or below, and EDK2's `StartImage` expects the
            // image to end at the TPL it started at.
            unsafe { restore_tpl(Tpl::APPLICATION) };
        }
    }
    stop(format_args!(
        "it ran for more than {} s without end (the interpreter has no loop limit)",
        AML_LIMIT.as_secs()
    ))
}

//! The attack suite's kernel module (`kserv-shim/module/kserv_attack.c`) is
//! plain C and spells KCore's ABI out as `#define`s. This test holds those
//! numbers to this crate: a call, error, owner, register or run-page word
//! that drifts makes it fail, so the attacks always aim at the real ABI.

#![allow(
    clippy::panic,
    clippy::expect_used,
    reason = "a test fails loudly on a missing or unreadable definition"
)]

use kcore_abi::{Error, HypercallId, PageOwner, reg, run, vm_flags};
use std::collections::HashMap;

/// Every `#define NAME VALUE` of the module whose value is a plain number,
/// or `(BASE + n)` / `(-n)` / `(n)` in parentheses.
fn defines() -> HashMap<String, i128> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../kserv-shim/module/kserv_attack.c"
    );
    let src = std::fs::read_to_string(path).expect("kserv_attack.c is readable");
    let mut out = HashMap::new();
    for line in src.lines() {
        let Some(rest) = line.strip_prefix("#define ") else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let (Some(name), value) = (it.next(), it.collect::<Vec<_>>().join(" ")) else {
            continue;
        };
        if name.contains('(') {
            continue;
        }
        let v = value.trim_matches(|c| c == '(' || c == ')');
        let parse = |t: &str| -> Option<i128> {
            let t = t.trim().trim_end_matches("UL").trim_end_matches("ULL");
            match t.strip_prefix("0x") {
                Some(h) => i128::from_str_radix(h, 16).ok(),
                None => t.parse().ok(),
            }
        };
        let value = match v.split_once(" + ") {
            Some((base, n)) => match (out.get(base.trim()), parse(n)) {
                (Some(b), Some(n)) => Some(b + n),
                _ => None,
            },
            None => parse(v),
        };
        if let Some(value) = value {
            out.insert(name.to_string(), value);
        }
    }
    out
}

fn get(d: &HashMap<String, i128>, name: &str) -> i128 {
    *d.get(name)
        .unwrap_or_else(|| panic!("kserv_attack.c defines no number {name}"))
}

#[test]
fn hypercall_ids_agree() {
    let d = defines();
    let names = [
        "KC_VERSION",
        "KC_FEATURES",
        "KC_CREATE_VM",
        "KC_CREATE_VCPU",
        "KC_DONATE_VM_POOL",
        "KC_DONATE_GUEST",
        "KC_SHARE_GUEST",
        "KC_UNSHARE_GUEST",
        "KC_TEARDOWN_VM",
        "KC_RECLAIM_PAGE",
        "KC_PAGE_OWNER",
        "KC_VERIFY_IMAGE",
        "KC_DECLARE_MMIO",
        "KC_VCPU_RUN",
        "KC_VCPU_GET_REG",
        "KC_VCPU_SET_REG",
        "KC_SELF_CHECK",
        "KC_GUEST_ID_REG",
    ];
    assert_eq!(names.len(), HypercallId::ALL.len());
    assert_eq!(get(&d, "KC_CALLS"), HypercallId::ALL.len() as i128);
    for (name, id) in names.iter().zip(HypercallId::ALL) {
        assert_eq!(get(&d, name), i128::from(id.function_id()), "{name}");
    }
}

#[test]
fn errors_owners_and_flags_agree() {
    let d = defines();
    let errors = [
        ("KC_NOT_SUPPORTED", Error::NotSupported),
        ("KC_NOT_REQUIRED", Error::NotRequired),
        ("KC_INVALID_PARAMETER", Error::InvalidParameter),
        ("KC_DENIED", Error::Denied),
        ("KC_BUSY", Error::Busy),
        ("KC_NO_MEMORY", Error::NoMemory),
        ("KC_NOT_FOUND", Error::NotFound),
        ("KC_VERIFICATION_FAILED", Error::VerificationFailed),
        ("KC_SELF_CHECK_FAILED", Error::SelfCheckFailed),
    ];
    assert_eq!(errors.len(), Error::ALL.len());
    for (name, e) in errors {
        assert_eq!(get(&d, name), e as i64 as i128, "{name}");
    }
    let owners = [
        ("OWNER_KCORE", PageOwner::KCore),
        ("OWNER_VM_TABLE", PageOwner::VmTable),
        ("OWNER_HOST", PageOwner::Host),
        ("OWNER_HOST_SHARED", PageOwner::HostSharedWithGuest),
        ("OWNER_GUEST", PageOwner::Guest),
        ("OWNER_GUEST_SHARED", PageOwner::GuestSharedWithHost),
    ];
    for (name, o) in owners {
        assert_eq!(get(&d, name), o as i128, "{name}");
    }
    assert_eq!(get(&d, "VM_PROTECTED"), i128::from(vm_flags::PROTECTED));
}

#[test]
fn registers_and_run_page_agree() {
    let d = defines();
    for (name, v) in [
        ("KR_PC", reg::PC),
        ("KR_PSTATE", reg::PSTATE),
        ("KR_SP_EL1", reg::SP_EL1),
        ("KR_ELR_EL1", reg::ELR_EL1),
        ("KR_SPSR_EL1", reg::SPSR_EL1),
        ("KR_V_LO", reg::V_LO),
        ("KR_CNTVOFF", reg::CNTVOFF),
    ] {
        assert_eq!(get(&d, name), i128::from(v), "{name}");
    }
    for (name, v) in [
        ("RUN_FLAGS", run::FLAGS),
        ("RUN_COMPLETION", run::COMPLETION),
        ("RUN_IRQ_COUNT", run::IRQ_COUNT),
        ("RUN_IRQS", run::IRQS),
        ("RUN_MAX_IRQS", run::MAX_IRQS),
        ("RUN_EXIT_REASON", run::EXIT_REASON),
        ("RUN_EXIT_FLAGS", run::EXIT_FLAGS),
        ("RUN_EXIT_ADDR", run::EXIT_ADDR),
        ("RUN_EXIT_DATA", run::EXIT_DATA),
        ("RUN_EXIT_WIDTH", run::EXIT_WIDTH),
    ] {
        assert_eq!(get(&d, name), v as i128, "{name}");
    }
    assert_eq!(get(&d, "EXIT_MMIO"), i128::from(run::exit::MMIO));
    assert_eq!(get(&d, "IRQ_PENDING"), i128::from(run::irq::PENDING));
    // The encoding of one interrupt word, and the system registers the
    // module names through its own KR_SYSREG.
    assert_eq!(
        run::irq::encode(40, 0xa0, true, run::irq::PENDING),
        40 | 0xa0 << 32 | 1 << 40 | 1 << 41
    );
    // KR_SYSREG(op0, op1, crn, crm, op2) is a macro: its body must be
    // reg::SYSREG | reg::sysreg(..).
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../kserv-shim/module/kserv_attack.c"
    ))
    .expect("kserv_attack.c is readable");
    assert!(
        src.contains("(0x10000 | (op0) << 14 | (op1) << 11 | (crn) << 7 | (crm) << 3 | (op2))")
    );
    assert_eq!(reg::SYSREG, 0x10000);
    for (i, shift) in [14, 11, 7, 3, 0].into_iter().enumerate() {
        let mut f = [0u64; 5];
        f[i] = 1;
        assert_eq!(reg::sysreg(f[0], f[1], f[2], f[3], f[4]), 1 << shift);
    }
}

//! The run page of `HostVcpuRun` (`kcore_abi::run`) as KServ fills and reads
//! it: the entry half written before each call, the exit half read after.
//! Used by the KVM API's vCPUs ([`crate::kvm`]).

use kcore_abi::run;

/// Access to KServ's own pages by pfn (the module's glue maps them).
pub trait PageIo {
    /// Copies `data` into KServ's page `pfn` at `offset` (within the page).
    fn write(&mut self, pfn: u64, offset: usize, data: &[u8]);
    /// Reads `buf.len()` bytes of KServ's page `pfn` at `offset`.
    fn read(&mut self, pfn: u64, offset: usize, buf: &mut [u8]);
    /// Writes `words` (little-endian) to page `pfn` from word `first` on.
    /// By default through [`Self::write`]; the module's glue passes the
    /// words as they are (see `ffi::glue_page_write_words`).
    fn write_words(&mut self, pfn: u64, first: usize, words: &[u64]) {
        let mut buf = [0u8; 8 * run::WORDS];
        let n = words.len().min(run::WORDS);
        for (chunk, w) in buf.chunks_exact_mut(8).zip(&words[..n]) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        self.write(pfn, 8 * first, &buf[..8 * n]);
    }
    /// A full memory barrier (`smp_mb()`) between this CPU's accesses to
    /// a page that another CPU accesses at the same time: a run page's
    /// dirty ring, which KCore appends to while the vCPU runs. By default
    /// none (a test's pages have no other CPU).
    fn fence(&mut self) {}
    /// Reads `words` (little-endian) from page `pfn` from word `first` on.
    /// By default through [`Self::read`].
    fn read_words(&mut self, pfn: u64, first: usize, words: &mut [u64]) {
        let mut buf = [0u8; 8 * run::WORDS];
        let n = words.len().min(run::WORDS);
        self.read(pfn, 8 * first, &mut buf[..8 * n]);
        for (w, chunk) in words[..n].iter_mut().zip(buf.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
    }
}

/// The entry half of a run: the flags (`run::entry_flags`: the guest
/// timer's configuration), the previous exit's completion and the
/// interrupts to have pending or active in the list registers.
pub fn write_entry<E: PageIo>(env: &mut E, pfn: u64, flags: u64, completion: u64, irqs: &[u64]) {
    let n = irqs.len().min(run::MAX_IRQS);
    let mut entry = [0u64; run::ENTRY_WORDS];
    entry[run::FLAGS] = flags;
    entry[run::COMPLETION] = completion;
    entry[run::IRQ_COUNT] = n as u64;
    entry[run::IRQS..run::IRQS + n].copy_from_slice(&irqs[..n]);
    // KCore reads only the first `n` interrupt words.
    env.write_words(pfn, 0, &entry[..run::IRQS + n]);
}

/// The exit half of a run page, from [`run::EXIT`] on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// The words.
    pub words: [u64; run::WORDS - run::EXIT],
}

impl Exit {
    /// Reads the exit half of page `pfn`.
    pub fn read<E: PageIo>(env: &mut E, pfn: u64) -> Exit {
        let mut e = Exit {
            words: [0; run::WORDS - run::EXIT],
        };
        env.read_words(pfn, run::EXIT, &mut e.words);
        e
    }

    /// Word `i` of the page (one of `run::EXIT_*`); 0 outside the half.
    pub fn word(&self, i: usize) -> u64 {
        i.checked_sub(run::EXIT)
            .and_then(|j| self.words.get(j))
            .copied()
            .unwrap_or(0)
    }

    /// The states now of the interrupts supplied at entry, if the exit
    /// reports as many as were supplied.
    pub fn irq_states(&self, supplied: usize) -> Option<&[u64]> {
        let n = self.word(run::EXIT_IRQ_COUNT);
        let first = run::EXIT_IRQS - run::EXIT;
        (n == supplied as u64 && supplied <= run::MAX_IRQS)
            .then(|| &self.words[first..first + supplied])
    }
}

//! Attaching the programs: sk_lookup to the network namespace, the TC classifier to interfaces.
//!
//! An interface whose name matches a glob is attached and *selecting* (its ifindex is in the
//! `SELECTING` map, so its new flows are intercepted). When a reload narrows the globs, the
//! interface stops selecting but the program stays attached until the interface goes or the
//! daemon exits, so the flows it already intercepted keep being steered to the daemon.
//!
//! TC attachment uses TCX where the kernel has it (links that vanish with the process) and the
//! clsact qdisc with a netlink filter otherwise (filters that survive a SIGKILL, so stale ones
//! carrying our program name are removed before attaching). The mode is chosen once, from the
//! kernel version, and corrected if the kernel refuses TCX.

use std::{
    collections::{HashMap, HashSet},
    fmt, fs, io,
};

use aya::{
    programs::{
        tc::{self, NlOptions, TcAttachOptions},
        LinkOrder, ProgramError, SchedClassifier, SkLookup, TcAttachType,
    },
    util::KernelVersion,
    Ebpf,
};
use mirror_common::{SK_LOOKUP_PROGRAM, TC_PROGRAM};
use tracing::{debug, info, warn};

use crate::config;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the eBPF object has no program {0:?}")]
    MissingProgram(&'static str),
    #[error("loading program {name}: {source} (the verifier or the kernel refused it)")]
    Load {
        name: &'static str,
        source: ProgramError,
    },
    #[error("attaching sk_lookup to this network namespace: {0}")]
    SkLookup(String),
    #[error("the eBPF object has no usable map {0:?}")]
    MissingMap(&'static str),
}

/// How the TC program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Tcx,
    Clsact,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Tcx => "tcx",
            Mode::Clsact => "clsact",
        })
    }
}

struct Attached {
    name: String,
    link: aya::programs::tc::SchedClassifierLinkId,
}

/// Owns the loaded object and every attachment of its programs.
pub struct Attacher {
    ebpf: Ebpf,
    selecting: aya::maps::HashMap<aya::maps::MapData, u32, u32>,
    config: config::Interception,
    mode: Mode,
    attached: HashMap<u32, Attached>,
    /// Every interface seen (index -> name), watched or not, to re-evaluate globs on reload.
    known: HashMap<u32, String>,
    /// Interfaces on which this daemon added the clsact qdisc (removed again at exit).
    created_clsact: HashSet<String>,
}

impl Attacher {
    /// Loads both programs and attaches sk_lookup to the current network namespace.
    pub fn new(mut ebpf: Ebpf, config: config::Interception) -> Result<Self, Error> {
        let selecting = ebpf
            .take_map(mirror_common::maps::SELECTING)
            .and_then(|map| aya::maps::HashMap::try_from(map).ok())
            .ok_or(Error::MissingMap(mirror_common::maps::SELECTING))?;
        let sk_lookup: &mut SkLookup = program(&mut ebpf, SK_LOOKUP_PROGRAM)?;
        sk_lookup.load().map_err(|source| Error::Load {
            name: SK_LOOKUP_PROGRAM,
            source,
        })?;
        let netns = fs::File::open("/proc/self/ns/net")
            .map_err(|e| Error::SkLookup(format!("opening /proc/self/ns/net: {e}")))?;
        sk_lookup
            .attach(&netns)
            .map_err(|e| Error::SkLookup(format!("{e} (sk_lookup needs Linux 5.9+)")))?;

        let classifier: &mut SchedClassifier = program(&mut ebpf, TC_PROGRAM)?;
        classifier.load().map_err(|source| Error::Load {
            name: TC_PROGRAM,
            source,
        })?;
        let mode = match KernelVersion::current() {
            Ok(v) if v >= KernelVersion::new(6, 6, 0) => Mode::Tcx,
            _ => Mode::Clsact,
        };
        Ok(Self {
            ebpf,
            selecting,
            config,
            mode,
            attached: HashMap::new(),
            known: HashMap::new(),
            created_clsact: HashSet::new(),
        })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Interfaces whose new flows are intercepted.
    pub fn attached_count(&self) -> usize {
        self.selecting.keys().count()
    }

    /// Whether the interface should carry the classifier.
    pub fn watches(&self, name: &str) -> bool {
        self.config.watches(name)
    }

    /// Takes new interface globs: interfaces that match now select; the others stop selecting
    /// (and stay attached, steering the flows they have).
    pub fn set_config(&mut self, config: config::Interception) {
        self.config = config;
        let known: Vec<(u32, String)> = self
            .known
            .iter()
            .map(|(index, name)| (*index, name.clone()))
            .collect();
        for (index, name) in known {
            self.attach(index, &name);
        }
    }

    /// Records that interface `index` is gone.
    pub fn vanished(&mut self, index: u32) {
        self.known.remove(&index);
        self.forget(index);
    }

    /// Brings interface `index` (now called `name`) in line with the globs: attached and
    /// selecting if a glob matches; if not, no longer selecting (an attachment stays).
    pub fn attach(&mut self, index: u32, name: &str) {
        self.known.insert(index, name.to_string());
        let watched = self.watches(name);
        if let Some(existing) = self.attached.get_mut(&index) {
            existing.name = name.to_string();
        } else if watched {
            remove_stale_filter(name);
            match self.attach_with_mode(name) {
                Ok(link) => {
                    info!(interface = name, index, mode = %self.mode, "attached");
                    self.attached.insert(
                        index,
                        Attached {
                            name: name.to_string(),
                            link,
                        },
                    );
                }
                // The interface may vanish between the event and the attach: not an error.
                Err(e) => {
                    warn!(interface = name, index, error = %e, "kernel: could not attach");
                    return;
                }
            }
        } else {
            return;
        }
        let selecting = self.selecting.get(&index, 0).is_ok();
        match (watched, selecting) {
            (true, false) => {
                if let Err(e) = self.selecting.insert(index, 1, 0) {
                    warn!(interface = name, index, error = %e, "kernel: cannot select the interface's flows");
                }
            }
            (false, true) => {
                let _ = self.selecting.remove(&index);
                info!(
                    interface = name,
                    index, "no longer matches the interface globs: new flows go direct, open ones keep the daemon"
                );
            }
            _ => {}
        }
    }

    fn attach_with_mode(
        &mut self,
        name: &str,
    ) -> Result<aya::programs::tc::SchedClassifierLinkId, ProgramError> {
        if self.mode == Mode::Tcx {
            let classifier: &mut SchedClassifier =
                program(&mut self.ebpf, TC_PROGRAM).map_err(|_| ProgramError::NotLoaded)?;
            match classifier.attach_with_options(
                name,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::first()),
            ) {
                Ok(link) => return Ok(link),
                Err(e) if refuses_tcx(&e) => {
                    info!(error = %e, "kernel refused TCX; using the clsact qdisc");
                    self.mode = Mode::Clsact;
                }
                Err(e) => return Err(e),
            }
        }
        match tc::qdisc_add_clsact(name) {
            Ok(()) => {
                self.created_clsact.insert(name.to_string());
            }
            // "Exclusivity flag on": the qdisc exists already (a CNI's or an earlier run's).
            Err(e) => debug!(interface = name, error = %e, "clsact qdisc already present"),
        }
        let classifier: &mut SchedClassifier =
            program(&mut self.ebpf, TC_PROGRAM).map_err(|_| ProgramError::NotLoaded)?;
        classifier.attach_with_options(
            name,
            TcAttachType::Ingress,
            TcAttachOptions::Netlink(NlOptions::default()),
        )
    }

    /// Forgets an interface that vanished (or no longer matches after a rename).
    pub fn forget(&mut self, index: u32) {
        let _ = self.selecting.remove(&index);
        if let Some(attached) = self.attached.remove(&index) {
            if let Ok(classifier) = program::<SchedClassifier>(&mut self.ebpf, TC_PROGRAM) {
                // Fails harmlessly when the interface is gone with its filters.
                let _ = classifier.detach(attached.link);
            }
            self.created_clsact.remove(&attached.name);
            info!(interface = attached.name, index, "detached");
        }
    }

    /// Detaches from every interface; returns the interfaces whose clsact qdisc we added.
    pub fn detach_all(&mut self) -> Vec<String> {
        let indices: Vec<u32> = self.attached.keys().copied().collect();
        let created = std::mem::take(&mut self.created_clsact);
        for index in indices {
            self.forget(index);
        }
        created.into_iter().collect()
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, Error>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program>,
{
    ebpf.program_mut(name)
        .and_then(|p| p.try_into().ok())
        .ok_or(Error::MissingProgram(name))
}

/// Removes a netlink filter a killed earlier run left on `name` (none is the usual case).
fn remove_stale_filter(name: &str) {
    match tc::qdisc_detach_program(name, TcAttachType::Ingress, TC_PROGRAM) {
        Ok(()) => warn!(interface = name, "removed a filter left by an earlier run"),
        Err(tc::TcError::IoError(e)) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => debug!(interface = name, error = %e, "no stale filter to remove"),
    }
}

fn refuses_tcx(error: &ProgramError) -> bool {
    let text = format!("{error:?}");
    [
        "InvalidInput",
        "Unsupported",
        "EINVAL",
        "os error 22",
        "os error 95",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

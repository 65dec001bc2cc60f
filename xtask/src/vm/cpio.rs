//! An initramfs as an in-memory tree written out as a `newc` cpio archive (what the kernel
//! unpacks), so no host `cpio` and no staging directory are needed.
//!
//! Paths are relative to the guest's `/`. Parent directories are created on demand, and a path is
//! resolved through the archive's own symbolic links first (`lib/x` lands in `usr/lib/x` once
//! `lib -> usr/lib` is in the archive), so host trees with merged `/usr` and guest-only files mix.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, BufWriter, Write},
    path::{Component, Path, PathBuf},
};

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone)]
enum Entry {
    Dir,
    /// Contents read from a host file when the archive is written.
    HostFile {
        source: PathBuf,
        mode: u32,
    },
    Bytes {
        data: Vec<u8>,
        mode: u32,
    },
    Symlink(PathBuf),
}

#[derive(Debug, Clone, Default)]
pub struct Archive {
    entries: BTreeMap<PathBuf, Entry>,
}

/// Symbolic links followed while resolving one path; more means a loop.
const MAX_LINKS: usize = 40;

impl Archive {
    pub fn new() -> Self {
        Self::default()
    }

    /// A directory (and its parents).
    pub fn dir(&mut self, path: impl AsRef<Path>) -> Result<PathBuf> {
        let path = self.resolve(path.as_ref(), true)?;
        self.make_dirs(&path)?;
        Ok(path)
    }

    /// A file whose contents are `source`'s on the host, with `source`'s permission bits.
    pub fn host_file(&mut self, path: impl AsRef<Path>, source: &Path) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mode = source
            .metadata()
            .with_context(|| format!("reading {}", source.display()))?
            .permissions()
            .mode()
            & 0o7777;
        self.put(
            path.as_ref(),
            Entry::HostFile {
                source: source.to_path_buf(),
                mode,
            },
        )
    }

    pub fn bytes(
        &mut self,
        path: impl AsRef<Path>,
        data: impl Into<Vec<u8>>,
        mode: u32,
    ) -> Result<()> {
        self.put(
            path.as_ref(),
            Entry::Bytes {
                data: data.into(),
                mode,
            },
        )
    }

    pub fn symlink(&mut self, path: impl AsRef<Path>, target: impl AsRef<Path>) -> Result<()> {
        self.put(path.as_ref(), Entry::Symlink(target.as_ref().to_path_buf()))
    }

    #[cfg(test)]
    pub fn contains(&self, path: impl AsRef<Path>) -> bool {
        self.resolve(path.as_ref(), true)
            .is_ok_and(|p| self.entries.contains_key(&p))
    }

    /// Copies host path `path` to the same guest path, reproducing every symbolic link met on
    /// the way (a merged-`/usr` `lib -> usr/lib`, `libz.so.1 -> libz.so.1.2.13`). Returns the
    /// host path of the file finally reached.
    pub fn host_path(&mut self, path: &Path) -> Result<PathBuf> {
        let mut pending = absolute_components(path)?;
        let mut done = PathBuf::from("/");
        let mut links = 0;
        while let Some(part) = pending.first().cloned() {
            pending.remove(0);
            let host = done.join(&part);
            let meta = host
                .symlink_metadata()
                .with_context(|| format!("reading {}", host.display()))?;
            if meta.file_type().is_symlink() {
                links += 1;
                if links > MAX_LINKS {
                    bail!("too many symbolic links resolving {}", path.display());
                }
                let target = host.read_link()?;
                if !self.entries.contains_key(&relative(&host)) {
                    self.symlink(relative(&host), &target)?;
                }
                let rest = std::mem::take(&mut pending);
                let target_abs = if target.is_absolute() {
                    target
                } else {
                    done.join(target)
                };
                pending = absolute_components(&target_abs)?;
                pending.extend(rest);
                done = PathBuf::from("/");
            } else if pending.is_empty() {
                if meta.is_dir() {
                    self.dir(relative(&host))?;
                } else {
                    self.host_file(relative(&host), &host)?;
                }
                return Ok(host);
            } else {
                done = host;
            }
        }
        Ok(done)
    }

    fn put(&mut self, path: &Path, entry: Entry) -> Result<()> {
        let path = self.resolve(path, false)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.make_dirs(parent)?;
        }
        if matches!(self.entries.get(&path), Some(Entry::Dir)) && !matches!(entry, Entry::Dir) {
            bail!("initramfs: {} is already a directory", path.display());
        }
        self.entries.insert(path, entry);
        Ok(())
    }

    fn make_dirs(&mut self, path: &Path) -> Result<()> {
        let mut current = PathBuf::new();
        for part in path.components() {
            current.push(part);
            match self.entries.get(&current) {
                None => {
                    self.entries.insert(current.clone(), Entry::Dir);
                }
                Some(Entry::Dir) => {}
                Some(_) => bail!(
                    "initramfs: {} is not a directory (resolve the path first)",
                    current.display()
                ),
            }
        }
        Ok(())
    }

    /// `path` (relative to the guest root, a leading `/` allowed) with the archive's symbolic
    /// links followed in its parents, and in the last component too when `follow_last`.
    fn resolve(&self, path: &Path, follow_last: bool) -> Result<PathBuf> {
        let mut pending = absolute_components(&Path::new("/").join(path))?;
        let mut done = PathBuf::new();
        let mut links = 0;
        while let Some(part) = pending.first().cloned() {
            pending.remove(0);
            let candidate = done.join(&part);
            let is_last = pending.is_empty();
            match self.entries.get(&candidate) {
                Some(Entry::Symlink(target)) if !is_last || follow_last => {
                    links += 1;
                    if links > MAX_LINKS {
                        bail!("initramfs: symbolic link loop at {}", path.display());
                    }
                    let base = Path::new("/").join(&done);
                    let target = if target.is_absolute() {
                        target.clone()
                    } else {
                        base.join(target)
                    };
                    let rest = std::mem::take(&mut pending);
                    pending = absolute_components(&target)?;
                    pending.extend(rest);
                    done = PathBuf::new();
                }
                _ => done = candidate,
            }
        }
        Ok(done)
    }

    /// Writes the archive to `path`; returns its size in bytes.
    pub fn write(&self, path: &Path) -> Result<u64> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = Counting::new(BufWriter::new(file));
        let mut ino = 1;
        for (name, entry) in &self.entries {
            ino += 1;
            match entry {
                Entry::Dir => header(&mut out, name, 0o040_755, ino, 0)?,
                Entry::Symlink(target) => {
                    let target = target.as_os_str().as_encoded_bytes();
                    header(&mut out, name, 0o120_777, ino, target.len())?;
                    out.write_all(target)?;
                    pad(&mut out)?;
                }
                Entry::Bytes { data, mode } => {
                    header(&mut out, name, 0o100_000 | mode, ino, data.len())?;
                    out.write_all(data)?;
                    pad(&mut out)?;
                }
                Entry::HostFile { source, mode } => {
                    let mut file = File::open(source)
                        .with_context(|| format!("reading {}", source.display()))?;
                    let len = file.metadata()?.len();
                    let len = usize::try_from(len).context("file too large for cpio")?;
                    header(&mut out, name, 0o100_000 | mode, ino, len)?;
                    let copied = io::copy(&mut file, &mut out)?;
                    if copied != len as u64 {
                        bail!("{} changed while being archived", source.display());
                    }
                    pad(&mut out)?;
                }
            }
        }
        header(&mut out, Path::new("TRAILER!!!"), 0, 0, 0)?;
        out.flush()?;
        Ok(out.count)
    }
}

/// Components of an absolute path with `.` and `..` resolved lexically (after links, as the
/// kernel does, because callers re-resolve each link target from the root).
fn absolute_components(path: &Path) -> Result<Vec<PathBuf>> {
    if !path.is_absolute() {
        bail!("expected an absolute path: {}", path.display());
    }
    let mut parts: Vec<PathBuf> = Vec::new();
    for part in path.components() {
        match part {
            Component::Normal(name) => parts.push(PathBuf::from(name)),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(parts)
}

/// A host absolute path as a guest path relative to `/`.
fn relative(path: &Path) -> PathBuf {
    path.strip_prefix("/").unwrap_or(path).to_path_buf()
}

struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W> Counting<W> {
    fn new(inner: W) -> Self {
        Self { inner, count: 0 }
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn header<W: Write>(
    out: &mut Counting<W>,
    name: &Path,
    mode: u32,
    ino: u32,
    size: usize,
) -> Result<()> {
    let name = name.as_os_str().as_encoded_bytes();
    let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime: reproducible archives
        u32::try_from(size).context("file too large for cpio")?,
        0, // dev major
        0, // dev minor
        0, // rdev major
        0, // rdev minor
        u32::try_from(name.len() + 1)?,
        0, // check
    ];
    out.write_all(b"070701")?;
    for field in fields {
        write!(out, "{field:08x}")?;
    }
    out.write_all(name)?;
    out.write_all(&[0])?;
    pad(out)
}

fn pad<W: Write>(out: &mut Counting<W>) -> Result<()> {
    let rem = (out.count % 4) as usize;
    if rem != 0 {
        out.write_all(&[0; 3][..4 - rem])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_created_and_links_are_followed() -> Result<()> {
        let mut archive = Archive::new();
        archive.symlink("lib", "usr/lib")?;
        archive.bytes("/lib/modules/x/a.ko", b"ko".to_vec(), 0o644)?;
        archive.symlink("usr/sbin/iptables", "xtables-nft-multi")?;
        let names: Vec<_> = archive
            .entries
            .keys()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "lib",
                "usr",
                "usr/lib",
                "usr/lib/modules",
                "usr/lib/modules/x",
                "usr/lib/modules/x/a.ko",
                "usr/sbin",
                "usr/sbin/iptables"
            ]
        );
        assert!(archive.contains("lib/modules/x/a.ko"));
        Ok(())
    }

    #[test]
    fn absolute_links_resolve_from_the_root() -> Result<()> {
        let mut archive = Archive::new();
        archive.symlink("bin", "/usr/bin")?;
        archive.bytes("bin/x", b"".to_vec(), 0o755)?;
        assert!(archive.entries.contains_key(Path::new("usr/bin/x")));
        Ok(())
    }

    #[test]
    fn a_file_cannot_replace_a_directory() -> Result<()> {
        let mut archive = Archive::new();
        archive.dir("a/b")?;
        assert!(archive.bytes("a/b", b"x".to_vec(), 0o644).is_err());
        Ok(())
    }

    #[test]
    fn newc_layout_is_padded_to_four_bytes() -> Result<()> {
        let mut archive = Archive::new();
        archive.bytes("init", b"#!/bin/sh\n".to_vec(), 0o755)?;
        let dir = std::env::temp_dir().join(format!("xtask-cpio-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("t.cpio");
        let size = archive.write(&path)?;
        let data = std::fs::read(&path)?;
        std::fs::remove_dir_all(&dir)?;
        assert_eq!(size, data.len() as u64);
        assert_eq!(size % 4, 0);
        assert!(data.starts_with(b"070701"));
        // header (110) + "init\0" (5) padded to 116, then 10 bytes of data padded to 12.
        assert_eq!(&data[116..126], b"#!/bin/sh\n");
        assert!(data[128..].starts_with(b"070701"));
        let trailer = data.windows(10).any(|w| w == b"TRAILER!!!");
        assert!(trailer);
        Ok(())
    }
}

//! Removal that stays inside the cache: no symbolic link followed, no mount point or other
//! device crossed, no lock removed that some process still holds.
//!
//! Everything here works relative to open directory descriptors (`openat`/`unlinkat` with
//! `O_NOFOLLOW`), so a folder swapped for a link between a check and a removal is not followed.
//! Each directory is compared with the cache root by device and, where the kernel reports it
//! (`statx`, Linux 5.8+), by mount id: a bind mount of another folder of the same file system has
//! the root's device but its own mount id.
//!
//! Locks: the compiler holds a lock file while it compiles an entry. A lock file is removed only
//! after this process took it itself (`flock(LOCK_EX | LOCK_NB)`); when another process holds it,
//! or the file system refuses `flock`, the lock stays.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

/// How deep removal descends inside an entry (entries are one or two levels deep; the limit
/// keeps a hostile tree from exhausting the stack).
const MAX_DEPTH: usize = 32;

/// Where a directory lives: its device and, where the kernel reports it, its mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsId {
    /// `st_dev`.
    pub dev: u64,
    /// The mount id (`statx`'s `stx_mnt_id`), when known.
    pub mount_id: Option<u64>,
}

impl FsId {
    /// Whether a directory with id `other` lies on the same device and mount as `self` (the
    /// root). Unknown mount ids compare by device only.
    pub fn same_mount(self, other: FsId) -> bool {
        self.dev == other.dev
            && match (self.mount_id, other.mount_id) {
                (Some(root), Some(dir)) => root == dir,
                _ => true,
            }
    }
}

/// Why something was not (entirely) removed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The path is a mount point or on another device than the root; it was not entered.
    Boundary(PathBuf),
    /// Deeper than [`MAX_DEPTH`].
    TooDeep(PathBuf),
    /// A lock file another process holds.
    LockHeld(PathBuf),
    /// A system call failed.
    Io(PathBuf, std::io::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Boundary(path) => write!(
                f,
                "{} is a mount point or on another device than the cache root; prune never crosses \
                 into it (unmount it, then prune again)",
                path.display()
            ),
            Failure::TooDeep(path) => write!(
                f,
                "{} is more than {MAX_DEPTH} levels deep; not removed",
                path.display()
            ),
            Failure::LockHeld(path) => write!(
                f,
                "{} is held by a running process (flock), which is probably compiling",
                path.display()
            ),
            Failure::Io(path, error) => write!(f, "{}: {error}", path.display()),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(Errno) -> Failure + '_ {
    move |errno| Failure::Io(path.to_owned(), errno.into())
}

/// The id of an open directory.
pub(crate) fn fs_id(fd: impl AsFd) -> std::io::Result<FsId> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::StatxFlags;
        match rustix::fs::statx(
            &fd,
            c"",
            AtFlags::EMPTY_PATH,
            StatxFlags::BASIC_STATS | StatxFlags::MNT_ID,
        ) {
            Ok(statx) => {
                let mount_id =
                    (statx.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(statx.stx_mnt_id);
                return Ok(FsId {
                    dev: rustix::fs::makedev(statx.stx_dev_major, statx.stx_dev_minor),
                    mount_id,
                });
            }
            Err(Errno::NOSYS | Errno::PERM | Errno::INVAL) => {}
            Err(errno) => return Err(errno.into()),
        }
    }
    let stat = rustix::fs::fstat(&fd)?;
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    Ok(FsId {
        dev: stat.st_dev as u64,
        mount_id: None,
    })
}

/// Opens a directory by path, following links in `path` (the root is taken as given).
pub(crate) fn open_root(path: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens the directory `name` inside `parent` without following a link.
pub(crate) fn open_dir_at(parent: impl AsFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Opens the directory `name` inside `parent` and checks that it is on the root's mount.
pub(crate) fn open_checked(
    parent: impl AsFd,
    name: &OsStr,
    path: &Path,
    root: FsId,
) -> Result<OwnedFd, Failure> {
    let fd = open_dir_at(parent, name).map_err(io(path))?;
    let id = fs_id(&fd).map_err(|error| Failure::Io(path.to_owned(), error))?;
    if !root.same_mount(id) {
        return Err(Failure::Boundary(path.to_owned()));
    }
    Ok(fd)
}

/// The children of an open directory, with their types (from the listing, or `lstat` when the
/// file system does not report them).
fn children(dir: &OwnedFd, path: &Path) -> Result<Vec<(Vec<u8>, FileType)>, Failure> {
    let mut listing = Dir::read_from(dir).map_err(io(path))?;
    let mut out = Vec::new();
    while let Some(child) = listing.read() {
        let child = child.map_err(io(path))?;
        let name = child.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        let file_type = match child.file_type() {
            FileType::Unknown => rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .map(|stat| FileType::from_raw_mode(stat.st_mode))
                .map_err(io(&path.join(OsStr::from_bytes(name.to_bytes()))))?,
            file_type => file_type,
        };
        out.push((name.to_bytes().to_vec(), file_type));
    }
    Ok(out)
}

/// Checks, without changing anything, that no directory below `dir` (open) is a mount point or
/// on another device; the first one found is the error.
pub(crate) fn check_tree(
    dir: &OwnedFd,
    path: &Path,
    root: FsId,
    depth: usize,
) -> Result<(), Failure> {
    if depth > MAX_DEPTH {
        return Err(Failure::TooDeep(path.to_owned()));
    }
    for (name, file_type) in children(dir, path)? {
        if file_type == FileType::Directory {
            let name = OsStr::from_bytes(&name);
            let child_path = path.join(name);
            let child = open_checked(dir, name, &child_path, root)?;
            check_tree(&child, &child_path, root, depth + 1)?;
        }
    }
    Ok(())
}

/// Removes everything inside `dir` (open): files and links are unlinked (a link's target is
/// never touched), folders are entered only when on the root's mount. Goes on past a failure
/// and returns the first one.
pub(crate) fn remove_contents(
    dir: &OwnedFd,
    path: &Path,
    root: FsId,
    depth: usize,
) -> Result<(), Failure> {
    if depth > MAX_DEPTH {
        return Err(Failure::TooDeep(path.to_owned()));
    }
    let mut first_failure = None;
    for (name, file_type) in children(dir, path)? {
        let name = OsStr::from_bytes(&name);
        let child_path = path.join(name);
        let result = if file_type == FileType::Directory {
            match open_checked(dir, name, &child_path, root) {
                Ok(child) => remove_contents(&child, &child_path, root, depth + 1).and_then(|()| {
                    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(io(&child_path))
                }),
                // Replaced by something else since the listing: unlink whatever it is now.
                Err(Failure::Io(_, error))
                    if error.raw_os_error() == Some(Errno::LOOP.raw_os_error())
                        || error.raw_os_error() == Some(Errno::NOTDIR.raw_os_error()) =>
                {
                    rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(io(&child_path))
                }
                Err(failure) => Err(failure),
            }
        } else {
            rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(io(&child_path))
        };
        match result {
            // Gone already (another prune, or the compiler cleaning up): nothing to do.
            Err(Failure::Io(_, error)) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(failure) => {
                first_failure.get_or_insert(failure);
            }
            Ok(()) => {}
        }
    }
    first_failure.map_or(Ok(()), Err)
}

/// A lock file this process holds (`flock` exclusive); released when dropped.
#[derive(Debug)]
pub(crate) struct HeldLock {
    _fd: OwnedFd,
    /// The lock file's inode, to recognise it again.
    pub(crate) ino: u64,
}

/// Takes the lock file `name` inside `dir` (open) without waiting: `Err(LockHeld)` when another
/// process holds it, `Err(Io)` when it cannot be opened or the file system refuses `flock`.
pub(crate) fn take_lock(dir: impl AsFd, name: &OsStr, path: &Path) -> Result<HeldLock, Failure> {
    let fd = rustix::fs::openat(
        &dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io(path))?;
    let stat = rustix::fs::fstat(&fd).map_err(io(path))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(Failure::Io(
            path.to_owned(),
            std::io::Error::other("not a regular file"),
        ));
    }
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(HeldLock {
            _fd: fd,
            #[allow(clippy::useless_conversion)]
            ino: u64::from(stat.st_ino),
        }),
        Err(Errno::WOULDBLOCK) => Err(Failure::LockHeld(path.to_owned())),
        Err(errno) => Err(Failure::Io(
            path.to_owned(),
            std::io::Error::other(format!(
                "cannot take the lock ({}); it is left in place",
                std::io::Error::from(errno)
            )),
        )),
    }
}

/// Unlinks the lock file `name` in `dir`, if it still is the file `held` locks.
pub(crate) fn remove_held_lock(
    dir: impl AsFd,
    name: &OsStr,
    path: &Path,
    held: &HeldLock,
) -> Result<(), Failure> {
    let now = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io(path))?;
    #[allow(clippy::useless_conversion)]
    if u64::from(now.st_ino) != held.ino {
        return Err(Failure::Io(
            path.to_owned(),
            std::io::Error::other("replaced by another file since it was locked; left in place"),
        ));
    }
    rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(io(path))
}

/// Renames `from` to `to` inside the directory `dir`; fails if `to` exists.
pub(crate) fn rename_in(
    dir: impl AsFd,
    from: &OsStr,
    to: &OsStr,
    path: &Path,
) -> Result<(), Failure> {
    #[cfg(target_os = "linux")]
    {
        rustix::fs::renameat_with(&dir, from, &dir, to, rustix::fs::RenameFlags::NOREPLACE)
            .map_err(io(path))
    }
    #[cfg(not(target_os = "linux"))]
    {
        if rustix::fs::statat(&dir, to, AtFlags::SYMLINK_NOFOLLOW).is_ok() {
            return Err(Failure::Io(
                path.to_owned(),
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
        rustix::fs::renameat(&dir, from, &dir, to).map_err(io(path))
    }
}

/// Removes the empty directory `name` in `dir`.
pub(crate) fn remove_dir_at(dir: impl AsFd, name: &OsStr, path: &Path) -> Result<(), Failure> {
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(io(path))
}

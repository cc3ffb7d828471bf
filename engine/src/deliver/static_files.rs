//! Static files under the configured root: request path → relative path
//! (traversal refused before the kernel sees it), and a per-worker cache of
//! open files with their shared mappings.
//!
//! The kernel enforces the root a second time: files are opened with
//! `openat2(root, rel, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, so a
//! symlink inside the root that points outside it fails with `EXDEV`.
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use memmap2::Mmap;

/// Why a path is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Tries to leave the root (`..`), or names something that must not be
    /// served (NUL byte): 403.
    Forbidden,
    /// A directory, a hidden file (`.name`), or nothing: 404.
    NotFound,
}

/// Map a decoded request path (`/a/b.ts`) to a path relative to the root.
pub fn relative_path(path: &str) -> Result<CString, Refusal> {
    if !path.starts_with('/') || path.contains('\0') {
        return Err(Refusal::Forbidden);
    }
    if path.ends_with('/') {
        return Err(Refusal::NotFound);
    }
    let mut rel = String::with_capacity(path.len());
    for seg in path.split('/') {
        match seg {
            "" | "." => continue,
            ".." => return Err(Refusal::Forbidden),
            s if s.starts_with('.') => return Err(Refusal::NotFound),
            s => {
                if !rel.is_empty() {
                    rel.push('/');
                }
                rel.push_str(s);
            }
        }
    }
    if rel.is_empty() {
        return Err(Refusal::NotFound);
    }
    CString::new(rel).map_err(|_| Refusal::Forbidden)
}

/// An open regular file with what responses need to know about it.
#[derive(Debug)]
pub struct OpenFile {
    /// The file (splice reads from it).
    pub file: File,
    /// Shared read-only mapping (None for empty files). Only the kernel reads
    /// it (send/sendmsg/send_zc copy from it), never this process, so a file
    /// truncated underneath turns into EFAULT on that one send, not SIGBUS.
    pub map: Option<Mmap>,
    /// Length at open time.
    pub len: u64,
    /// Modification time.
    pub modified: Option<SystemTime>,
    /// Strong ETag, quoted.
    pub etag: String,
    /// When it was opened (cache validity).
    pub opened: Instant,
    ino: (u64, u64),
}

/// What an opened descriptor turned out to be.
#[derive(Debug)]
pub enum Opened {
    /// A regular file, ready to serve.
    File(OpenFile),
    /// A directory or something else that is not served.
    NotAFile,
}

impl OpenFile {
    /// Inspect a freshly opened descriptor; maps it when it is a regular file.
    pub fn from_file(file: File, now: Instant) -> std::io::Result<Opened> {
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Ok(Opened::NotAFile);
        }
        let len = meta.len();
        let map = if len > 0 {
            // SAFETY: the mapping is read-only and shared; this process never
            // dereferences it (only hands address ranges to the kernel, which
            // copies with fault handling), so a concurrent truncate or write
            // by another process cannot cause UB here.
            Some(unsafe { Mmap::map(&file)? })
        } else {
            None
        };
        let modified = meta.modified().ok();
        let etag = format!(
            "\"{:x}-{:x}-{:x}\"",
            meta.ino(),
            len,
            meta.mtime_nsec() as u64 ^ (meta.mtime() as u64) << 20
        );
        Ok(Opened::File(OpenFile {
            file,
            map,
            len,
            modified,
            etag,
            opened: now,
            ino: (meta.dev(), meta.ino()),
        }))
    }

    /// Same file, same size and mtime as `other`.
    pub fn same_as(&self, other: &OpenFile) -> bool {
        self.ino == other.ino && self.len == other.len && self.modified == other.modified
    }
}

/// A worker's cache of open files by relative path, each entry trusted for
/// `valid` after it was opened (like nginx's `open_file_cache valid=`).
#[derive(Debug)]
pub struct FileCache {
    map: HashMap<CString, Rc<OpenFile>>,
    valid: Duration,
    capacity: usize,
}

impl FileCache {
    /// A cache trusting entries for `valid`, holding at most `capacity`.
    pub fn new(valid: Duration, capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            valid,
            capacity,
        }
    }

    /// A still-valid entry.
    pub fn get(&self, rel: &CString, now: Instant) -> Option<Rc<OpenFile>> {
        let f = self.map.get(rel)?;
        (now.duration_since(f.opened) < self.valid).then(|| f.clone())
    }

    /// Insert a freshly opened file, keeping the old entry (and its mapping)
    /// when nothing changed.
    pub fn insert(&mut self, rel: CString, file: OpenFile, now: Instant) -> Rc<OpenFile> {
        if self.valid.is_zero() {
            return Rc::new(file);
        }
        if let Some(old) = self.map.get_mut(&rel)
            && old.same_as(&file)
            && let Some(o) = Rc::get_mut(old)
        {
            o.opened = now;
            return old.clone();
        }
        if self.map.len() >= self.capacity {
            let valid = self.valid;
            self.map.retain(|_, f| now.duration_since(f.opened) < valid);
            if self.map.len() >= self.capacity {
                self.map.clear();
            }
        }
        let rc = Rc::new(file);
        self.map.insert(rel, rc.clone());
        rc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_hidden_paths_are_refused() {
        assert_eq!(
            relative_path("/a/b.ts").unwrap().to_str().unwrap(),
            "a/b.ts"
        );
        assert_eq!(relative_path("//a/./b").unwrap().to_str().unwrap(), "a/b");
        assert_eq!(relative_path("/../etc/passwd"), Err(Refusal::Forbidden));
        assert_eq!(
            relative_path("/a/../../etc/passwd"),
            Err(Refusal::Forbidden)
        );
        assert_eq!(relative_path("/a/.."), Err(Refusal::Forbidden));
        assert_eq!(relative_path("/.git/config"), Err(Refusal::NotFound));
        assert_eq!(relative_path("/"), Err(Refusal::NotFound));
        assert_eq!(relative_path("/dir/"), Err(Refusal::NotFound));
        assert_eq!(relative_path("/a\0b"), Err(Refusal::Forbidden));
        assert_eq!(relative_path("a"), Err(Refusal::Forbidden));
    }

    proptest::proptest! {
        #[test]
        fn accepted_paths_never_climb(p in "[/a-z.%]{0,40}") {
            if let Ok(rel) = relative_path(&p) {
                let s = rel.to_str().unwrap();
                proptest::prop_assert!(!s.starts_with('/'));
                proptest::prop_assert!(s.split('/').all(|seg| seg != ".." && !seg.is_empty()));
            }
        }
    }
}

//! `--chmod` applied to a file's mode. An octal value replaces the
//! permission, set-id and sticky bits outright; a symbolic value
//! (`u+x,go-w`, `a=rX`, `g=u`) is a program of chmod(1) edits run against
//! each source file's own mode, with BSD `setmode` semantics and a umask
//! of 0, which is what BuildKit applies (through its `dchapes-mode`
//! dependency): `X` looks at the mode *before* the edits, a bare `+w` means
//! all classes, `s` and `t` are ignored for `o` alone, and `u`/`g`/`o` on
//! the right copy another class's bits as they stand at that point.
//!
//! It owns no I/O and must not import anything outside this module's
//! input type, [`Chmod`] from the Dockerfile layer, which is where the
//! value was checked for syntax.

use crate::util::chmod::Chmod;

const SETUID: u32 = 0o4000;
const SETGID: u32 = 0o2000;
const STICKY: u32 = 0o1000;
const USER: u32 = SETUID | 0o700;
const GROUP: u32 = SETGID | 0o070;
const OTHER: u32 = 0o007;
/// What `a` (or no class at all, for `=`) covers; sticky only joins in
/// through `t`.
const ALL: u32 = SETUID | SETGID | 0o777;
const EXEC: u32 = 0o111;

/// A `--chmod` that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModeError {
    #[error("invalid --chmod `{mode}`: invalid syntax")]
    ParseSymbolic { mode: String },
    #[error("invalid --chmod `{mode:o}`: only bits 07777 can be set")]
    CheckOctal { mode: u32 },
}

/// One step of a compiled symbolic mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edit {
    Clear(u32),
    Set(u32),
    /// `X`: set these bits if the original mode had any execute bit or
    /// the file is a directory.
    SetIfExecutable(u32),
    /// `[ugo][+-=][ugo]`: copy the source class's `rwx` to each target.
    CopyClass {
        from_shift: u32,
        targets: [bool; 3],
        clear: bool,
        set: bool,
        /// `=` clears all of each target's `rwx`, `-` only the copied bits.
        clear_all: bool,
    },
}

/// A compiled `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModeChange {
    Octal(u32),
    Symbolic(Vec<Edit>),
}

impl ModeChange {
    pub fn compile(chmod: &Chmod) -> Result<ModeChange, ModeError> {
        match chmod {
            Chmod::Octal(bits) if *bits <= 0o7777 => Ok(ModeChange::Octal(*bits)),
            Chmod::Octal(bits) => Err(ModeError::CheckOctal { mode: *bits }),
            Chmod::Symbolic(text) => compile_symbolic(text)
                .map(ModeChange::Symbolic)
                .ok_or_else(|| ModeError::ParseSymbolic { mode: text.clone() }),
        }
    }

    /// The new `07777` bits for a file whose current bits are `mode`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            ModeChange::Octal(bits) => bits & 0o7777,
            ModeChange::Symbolic(edits) => run(edits, mode & 0o7777, is_dir),
        }
    }

    /// The mode directories created for the copy's destination get: only
    /// an octal value applies there (BuildKit passes `Mode`, never the
    /// symbolic string, to `MkdirAll`), permission bits only.
    pub fn octal_dir_mode(&self) -> Option<u32> {
        match self {
            ModeChange::Octal(bits) => Some(bits & 0o777),
            ModeChange::Symbolic(_) => None,
        }
    }
}

fn run(edits: &[Edit], original: u32, is_dir: bool) -> u32 {
    let mut mode = original;
    for edit in edits {
        match *edit {
            Edit::Clear(bits) => mode &= !bits,
            Edit::Set(bits) => mode |= bits,
            Edit::SetIfExecutable(bits) => {
                if original & EXEC != 0 || is_dir {
                    mode |= bits;
                }
            }
            Edit::CopyClass {
                from_shift,
                targets,
                clear,
                set,
                clear_all,
            } => {
                let value = (mode >> from_shift) & 0o7;
                let cleared = if clear_all { 0o7 } else { value };
                for (i, shift) in [6u32, 3, 0].into_iter().enumerate() {
                    if !targets[i] {
                        continue;
                    }
                    if clear {
                        mode &= !(cleared << shift);
                    }
                    if set {
                        mode |= value << shift;
                    }
                }
            }
        }
    }
    mode & 0o7777
}

/// Parses chmod(1) symbolic syntax into edits; `None` on a syntax error.
/// Grammar: clauses separated by `,`; each is `[ugoa]*` followed by one
/// or more actions `[+-=]` with permission letters `[rwxXst]` and/or class
/// letters `[ugo]`.
fn compile_symbolic(text: &str) -> Option<Vec<Edit>> {
    let s = text.as_bytes();
    let mut edits = Vec::new();
    let mut i = 0;
    loop {
        let mut who = 0u32;
        loop {
            match s.get(i)? {
                b'a' => who |= ALL,
                b'u' => who |= USER,
                b'g' => who |= GROUP,
                b'o' => who |= OTHER,
                _ => break,
            }
            i += 1;
        }
        // A `=` with nothing after it clears; once something was set by
        // this action, the trailing flush must not clear again.
        let mut equal_done = false;
        loop {
            let op = *s.get(i)?;
            i += 1;
            match op {
                b'+' | b'-' => {}
                b'=' => equal_done = false,
                _ => return None,
            }
            who &= !STICKY;
            let mut perm = 0u32;
            let mut perm_x = 0u32;
            // `s`/`t` mean nothing for "other" alone.
            let not_only_other = |who: u32| who == 0 || who & !OTHER != 0;
            loop {
                let c = s.get(i).copied();
                match c {
                    Some(b'r') => perm |= 0o444,
                    Some(b'w') => perm |= 0o222,
                    Some(b'x') => perm |= EXEC,
                    Some(b'X') if op == b'-' => perm |= EXEC,
                    Some(b'X') => perm_x = EXEC,
                    Some(b's') => {
                        if not_only_other(who) {
                            perm |= SETUID | SETGID;
                        }
                    }
                    Some(b't') => {
                        if not_only_other(who) {
                            who |= STICKY;
                            perm |= STICKY;
                        }
                    }
                    Some(class @ (b'u' | b'g' | b'o')) => {
                        if perm != 0 {
                            push_op(&mut edits, op, who, perm);
                            perm = 0;
                        }
                        if op == b'=' {
                            equal_done = true;
                        }
                        if perm_x != 0 {
                            edits.push(Edit::SetIfExecutable(masked(who, perm_x)));
                            perm_x = 0;
                        }
                        edits.push(copy_class(class, who, op));
                    }
                    _ => {
                        if perm != 0 || (op == b'=' && !equal_done) {
                            if op == b'=' {
                                equal_done = true;
                            }
                            push_op(&mut edits, op, who, perm);
                        }
                        if perm_x != 0 {
                            edits.push(Edit::SetIfExecutable(masked(who, perm_x)));
                        }
                        break;
                    }
                }
                i += 1;
            }
            match s.get(i) {
                None => return Some(edits),
                Some(b',') => {
                    i += 1;
                    break;
                }
                // Another action for the same classes.
                Some(_) => {}
            }
        }
    }
}

/// The bits an action touches: the named classes', or every class when
/// none was named (a umask of 0 masks nothing).
fn masked(who: u32, perm: u32) -> u32 {
    if who == 0 {
        perm
    } else {
        who & perm
    }
}

fn push_op(edits: &mut Vec<Edit>, op: u8, who: u32, perm: u32) {
    match op {
        b'=' => {
            edits.push(Edit::Clear(if who == 0 { ALL } else { who }));
            edits.push(Edit::Set(masked(who, perm)));
        }
        b'+' => edits.push(Edit::Set(masked(who, perm))),
        _ => edits.push(Edit::Clear(masked(who, perm))),
    }
}

fn copy_class(class: u8, who: u32, op: u8) -> Edit {
    let from_shift = match class {
        b'u' => 6,
        b'g' => 3,
        _ => 0,
    };
    let targets = if who == 0 {
        [true; 3]
    } else {
        [who & 0o400 != 0, who & 0o040 != 0, who & 0o004 != 0]
    };
    Edit::CopyClass {
        from_shift,
        targets,
        clear: op != b'+',
        set: op != b'-',
        clear_all: op == b'=',
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str, mode: u32, is_dir: bool) -> u32 {
        ModeChange::compile(&Chmod::Symbolic(s.into()))
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .apply(mode, is_dir)
    }

    #[test]
    fn buildkit_non_octal_cases() {
        // testChmodNonOctal: a 0666 file and a 0124 directory.
        assert_eq!(sym("go-w", 0o666, false), 0o644);
        assert_eq!(sym("u=rw,g=r,o=r", 0o666, false), 0o644);
        assert_eq!(sym("a+X", 0o666, false), 0o666);
        assert_eq!(sym("go-w", 0o124, true), 0o104);
        assert_eq!(sym("u+rw,g+r,o-x,o+w", 0o124, true), 0o766);
        assert_eq!(sym("a+X", 0o124, true), 0o135);
    }

    #[test]
    fn chmod_one_semantics() {
        assert_eq!(sym("+x", 0o644, false), 0o755);
        assert_eq!(sym("u+x", 0o644, false), 0o744);
        assert_eq!(sym("=rw,+X", 0o750, false), 0o777);
        assert_eq!(sym("=rw,+X", 0o640, false), 0o666);
        assert_eq!(sym("go=", 0o777, false), 0o700);
        assert_eq!(sym("go=u-w", 0o755, false), 0o755);
        assert_eq!(sym("g=u", 0o640, false), 0o660);
        assert_eq!(sym("o+g", 0o650, false), 0o655);
        assert_eq!(sym("u-g", 0o770, false), 0o070);
        assert_eq!(sym("u+s", 0o755, false), 0o4755);
        assert_eq!(sym("g+s", 0o755, true), 0o2755);
        assert_eq!(sym("+s", 0o755, false), 0o6755);
        assert_eq!(sym("o+s", 0o755, false), 0o755);
        assert_eq!(sym("+t", 0o755, true), 0o1755);
        assert_eq!(sym("o+t", 0o755, true), 0o755);
        assert_eq!(sym("a-st", 0o7755, true), 0o1755 & !STICKY);
        assert_eq!(sym("u=rwx,g=rx,o=", 0o4644, false), 0o750);
        assert_eq!(sym("-X", 0o755, false), 0o644);
        // X looks at the original mode, not the one being built.
        assert_eq!(sym("a-x,a+X", 0o744, false), 0o755);
        assert_eq!(sym("=", 0o4777, false), 0o000);
        assert_eq!(sym("ug+rw-x", 0o715, false), 0o665);
    }

    #[test]
    fn octal_replaces_all_bits() {
        let m = ModeChange::compile(&Chmod::Octal(0o4750)).unwrap();
        assert_eq!(m.apply(0o777, false), 0o4750);
        assert_eq!(m.octal_dir_mode(), Some(0o750));
        assert!(ModeChange::compile(&Chmod::Octal(0o17777)).is_err());
    }

    #[test]
    fn bad_symbolic_modes() {
        for bad in ["", "u", "x", "u+x,", ",u+x", "u+q", "rw", "a,b", "u+x-"] {
            let err = ModeChange::compile(&Chmod::Symbolic(bad.into()));
            // `u+x-` is a trailing `-` action that clears nothing: valid.
            if bad == "u+x-" {
                assert!(err.is_ok());
                continue;
            }
            assert_eq!(
                err.unwrap_err(),
                ModeError::ParseSymbolic { mode: bad.into() },
                "{bad}"
            );
        }
    }
}

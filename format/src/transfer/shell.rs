//! Simple shell command lines, as an exec request carries them: splitting into words
//! ([`shell_words`], which scp's command parsing uses) and [`reads_commands_on_stdin`].

use super::scp::basename;

/// Shells whose standard input, with no terminal, is a script of commands.
const STDIN_SHELLS: [&[u8]; 7] = [b"sh", b"bash", b"dash", b"zsh", b"ksh", b"mksh", b"ash"];

/// Whether `command` starts a shell that reads its commands from standard input: `bash`,
/// `sh -s`, `bash -x`, `zsh -l`, but not `bash -c '…'` (commands in the argument) or
/// `bash script.sh` (commands in a file). A guess from the command line: it only adds an
/// index of the lines, never removes a byte from the recording.
pub fn reads_commands_on_stdin(command: impl AsRef<[u8]>) -> bool {
    let Some((words, _)) = shell_words(command.as_ref()) else { return false };
    let mut words = words.into_iter();
    let Some(program) = words.next() else { return false };
    if !STDIN_SHELLS.contains(&basename(&program)) {
        return false;
    }
    for word in words {
        if word == b"--" || word == b"-" {
            return true;
        }
        if word.starts_with(b"--") {
            continue; // --norc, --login, --posix…
        }
        match word.strip_prefix(b"-").or_else(|| word.strip_prefix(b"+")) {
            Some(flags) if flags.contains(&b'c') => return false,
            Some(flags) if flags.contains(&b's') => return true,
            Some(_) => {}
            None => return false, // a script file
        }
    }
    true
}

/// Splits a simple shell command into words, undoing quoting. Returns whether
/// the shell would expand something (`~`, `$`, globs, braces), or `None` for
/// anything beyond a simple command.
pub(super) fn shell_words(command: &[u8]) -> Option<(Vec<Vec<u8>>, bool)> {
    let mut words = Vec::new();
    let mut word: Option<Vec<u8>> = None;
    let mut expands = false;
    let mut i = 0;
    while i < command.len() {
        let b = command[i];
        i += 1;
        match b {
            b' ' | b'\t' => words.extend(word.take()),
            b'\'' => {
                let len = command[i..].iter().position(|&c| c == b'\'')?;
                word.get_or_insert_with(Vec::new).extend_from_slice(&command[i..i + len]);
                i += len + 1;
            }
            b'"' => {
                let w = word.get_or_insert_with(Vec::new);
                loop {
                    let c = *command.get(i)?;
                    i += 1;
                    match c {
                        b'"' => break,
                        b'\\' => match *command.get(i)? {
                            e @ (b'$' | b'`' | b'"' | b'\\') => {
                                w.push(e);
                                i += 1;
                            }
                            b'\n' => i += 1,
                            _ => w.push(b'\\'),
                        },
                        b'`' => return None,
                        b'$' => {
                            if command.get(i) == Some(&b'(') {
                                return None;
                            }
                            expands = true;
                            w.push(c);
                        }
                        _ => w.push(c),
                    }
                }
            }
            b'\\' => {
                let c = *command.get(i)?;
                i += 1;
                if c != b'\n' {
                    word.get_or_insert_with(Vec::new).push(c);
                }
            }
            b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' | b'`' | b'\n' => return None,
            b'#' if word.is_none() => break,
            b'$' if command.get(i) == Some(&b'(') => return None,
            _ => {
                let starts = word.is_none();
                if matches!(b, b'$' | b'*' | b'?' | b'[' | b'{') || (b == b'~' && starts) {
                    expands = true;
                }
                word.get_or_insert_with(Vec::new).push(b);
            }
        }
    }
    words.extend(word);
    Some((words, expands))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shells_reading_commands_on_stdin_are_told_apart() {
        for yes in
            ["bash", "sh -s", "/bin/bash -x", "zsh -l", "bash --norc", "sh -s arg1 arg2", "dash -"]
        {
            assert!(reads_commands_on_stdin(yes), "{yes}");
        }
        for no in [
            "bash -c 'id'",
            "sh -xc id",
            "bash script.sh",
            "python3",
            "scp -t /tmp",
            "cat",
            "./bash-like",
        ] {
            assert!(!reads_commands_on_stdin(no), "{no}");
        }
    }
}

//! Untrusted bytes made printable: [`escape_bytes`] (lossless, see the module documentation of
//! [`crate::transfer`]) and [`Text`], a path or message kept in memory up to a bound.

/// Longest path kept in memory; longer ones are cut.
pub(super) const MAX_TEXT: usize = 4096;
const MAX_MESSAGE: usize = 1024;

/// Renders untrusted bytes as a printable `String`, losslessly (see the module
/// documentation): the original bytes can always be recovered.
pub fn escape_bytes(raw: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(raw.len());
    let push_byte = |out: &mut String, b: u8| {
        out.push('\\');
        out.push('x');
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    };
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else if c.is_ascii_control() {
                // An ASCII char is one byte.
                push_byte(&mut out, c as u8);
            } else if c.is_control() || is_invisible(c) {
                out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            push_byte(&mut out, b);
        }
    }
    out
}

/// Format characters that can hide or reorder text in a log viewer or terminal: bidirectional
/// marks, embeddings, overrides and isolates, zero-width characters, the soft hyphen, line and
/// paragraph separators, the BOM and interlinear annotation marks.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

/// Untrusted text kept in memory, cut at a bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Text {
    pub(super) raw: Vec<u8>,
    omitted: usize,
}

impl Text {
    fn new(raw: &[u8], max: usize) -> Self {
        let keep = raw.len().min(max);
        Self { raw: raw[..keep].to_vec(), omitted: raw.len() - keep }
    }

    pub(super) fn path(raw: &[u8]) -> Self {
        Self::new(raw, MAX_TEXT)
    }

    pub(super) fn render(&self) -> String {
        let mut s = escape_bytes(&self.raw);
        if self.omitted > 0 {
            s.push_str(&format!("\\[{} more bytes]", self.omitted));
        }
        s
    }
}

pub(super) fn message(raw: &[u8]) -> String {
    Text::new(raw, MAX_MESSAGE).render()
}

#[cfg(test)]
mod tests {
    use test_util::Rng;

    use super::*;

    /// Inverse of [`escape_bytes`], to prove it loses nothing.
    fn unescape(s: &str) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'\\' {
                out.push(b[i]);
                i += 1;
                continue;
            }
            match b[i + 1] {
                b'\\' => {
                    out.push(b'\\');
                    i += 2;
                }
                b'x' => {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("ascii");
                    out.push(u8::from_str_radix(hex, 16).expect("hex"));
                    i += 4;
                }
                b'u' => {
                    let end = i + b[i..].iter().position(|&c| c == b'}').expect("}");
                    let hex = std::str::from_utf8(&b[i + 3..end]).expect("ascii");
                    let c =
                        char::from_u32(u32::from_str_radix(hex, 16).expect("hex")).expect("char");
                    out.extend_from_slice(c.to_string().as_bytes());
                    i = end + 1;
                }
                other => panic!("unknown escape {other}"),
            }
        }
        out
    }

    #[test]
    fn escape_round_trips_random_bytes_and_prints_no_controls() {
        let mut rng = Rng::new(42);
        let mut cases: Vec<Vec<u8>> = vec![
            b"plain/path".to_vec(),
            "caf\u{e9}/\u{202e}/\u{200b}/\u{85}".as_bytes().to_vec(),
            b"\\x41".to_vec(),
        ];
        for _ in 0..2000 {
            let n = rng.below(40);
            let mut bytes = rng.bytes(n);
            if rng.below(2) == 0 {
                // Bias towards valid multi-byte UTF-8.
                bytes.extend_from_slice("\u{e9}\u{2066}\u{1f600}".as_bytes());
            }
            cases.push(bytes);
        }
        for raw in cases {
            let shown = escape_bytes(&raw);
            assert_eq!(unescape(&shown), raw, "{shown}");
            assert!(!shown.chars().any(|c| c.is_control() || is_invisible(c)), "{shown:?}");
        }
    }
}

//! The redaction rules: one regex per shape people paste, each with a check
//! for what a regex alone cannot say (a Luhn digit, a digit count, the word
//! before it). The order is the priority: a finding that overlaps one made
//! by an earlier rule is dropped, so containers (a URL, a key block) come
//! before what they contain, and labelled shapes before bare guesses.

use std::ops::Range;
use std::sync::LazyLock;

use regex_automata::meta::Regex;

use super::Kind;
use super::checks::*;

/// What a rule does with a match: the byte range to replace, possibly
/// narrowed, or `None` to keep the text.
type Check = fn(&str, Range<usize>) -> Option<Range<usize>>;

/// One shape of one kind of personal data.
pub(super) struct Rule {
    pub(super) kind: Kind,
    /// Run with the caller's cache (`redact`), so one message takes one
    /// thread's caches for every rule at once, not each rule's own in turn.
    pub(super) regex: Regex,
    /// Capture group holding the part to replace; 0 for the whole match.
    pub(super) group: usize,
    pub(super) check: Check,
}

/// Compiles a rule. `\b` is made ASCII: the lazy DFA gives up on Unicode
/// word boundaries in non-ASCII text (every accented message), and an ASCII
/// boundary is what the shapes mean anyway. No pattern here writes `\\b`.
fn rule(kind: Kind, pattern: &str, group: usize, check: Check) -> Rule {
    // A literal backslash before `b` would be rewritten too.
    assert!(!pattern.contains(r"\\b"), "{pattern}");
    let pattern = pattern.replace(r"\b", r"(?-u:\b)");
    Rule { kind, regex: Regex::new(&pattern).unwrap(), group, check }
}

/// Every rule, highest priority first.
pub(super) static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    vec![
        // --- Containers ---------------------------------------------------
        rule(
            Kind::Token,
            r"(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)",
            0,
            keep,
        ),
        rule(Kind::Url, r#"(?i)\b(?:https?|ftps?|wss?)://[^\s<>"'`]+"#, 0, url_with_secret),
        // --- Secrets named by a label -------------------------------------
        rule(
            Kind::Password,
            r"(?i)\b(?:password|passwd|passwort|pass|pwd|passcode|contrase(?:ñ|n)a|senha|mot_de_passe)=([^&\s]+)",
            1,
            keep,
        ),
        rule(
            Kind::Token,
            r"(?i)\b(?:access_token|refresh_token|id_token|auth_token|token|api[_-]?key|apikey|key|secret|client_secret|auth|sig|signature|session_?id|sid)=([^&\s]+)",
            1,
            keep,
        ),
        rule(
            Kind::Password,
            r#"(?i)\b(?:password|passwd|passwort|passcode|pwd|contrase(?:ñ|n)a|senha|mot de passe|code d'acc(?:e|è)s)\s*:\s*("[^"\n]{1,64}"|'[^'\n]{1,64}'|\S+)"#,
            1,
            secret_value,
        ),
        rule(
            Kind::Password,
            r#"(?i)\b(?:password|passcode|pin|contrase(?:ñ|n)a|senha|passwort|mot de passe)\s+(?:is|was|es|era|est|ist|war|é)\s+("[^"\n]{1,64}"|\S+)"#,
            1,
            secret_value,
        ),
        rule(
            Kind::Token,
            r"(?i)\b(?:api[ _-]?key|access[ _-]?key|secret[ _-]?key|secret|bot[ _-]?token|access[ _-]?token|auth[ _-]?token|token)\s*:\s*([^\s,;]+)",
            1,
            token_value,
        ),
        rule(Kind::Token, r"(?i)\b(?:bearer|basic)\s+([A-Za-z0-9._~+/-]+=*)", 1, |text, range| {
            (range.len() >= 16).then_some(range).filter(|range| has_letter_and_digit(&text[range.clone()]))
        }),
        // --- Tokens by their own shape ------------------------------------
        rule(Kind::Token, r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*", 0, keep),
        rule(Kind::Token, r"\b\d{6,12}:[A-Za-z0-9_-]{30,}", 0, keep),
        rule(Kind::Token, r"\b[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{20,}", 0, |text, range| {
            let found = &text[range.clone()];
            (has_letter_and_digit(found) && has_both_cases(found)).then_some(range)
        }),
        rule(
            Kind::Token,
            r"\b(?:(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}|gh[opusr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|[sr]k_(?:live|test)_[A-Za-z0-9]{10,}|AIza[A-Za-z0-9_-]{30,})",
            0,
            keep,
        ),
        // --- People and accounts ------------------------------------------
        // A shell prompt names the account and usually the owner's machine:
        // `ann@Anns-MacBook-Pro ~ %`.
        rule(
            Kind::User,
            r"(?m)(?:^|[\s(\[])([a-z_][a-z0-9._-]{0,31}@[A-Za-z0-9][A-Za-z0-9-]*(?:\.local)?)(?::~|:/| ~| /|\s?[%$#](?:\s|$))",
            1,
            keep,
        ),
        rule(
            Kind::Email,
            r"(?i)[\p{L}\p{N}_%+•-][\p{L}\p{N}._%+'•*-]*@(?:(?:[\p{L}\p{N}*•-]+\.)+(?:xn--[a-z0-9-]+|\p{L}{2,})\b|…|\.\.\.)",
            0,
            keep,
        ),
        // An address typed backwards inside a right-to-left override shows
        // the right way round; with the override stripped it reads
        // `moc.duolci@nna`: a reversed top-level domain, then the rest.
        rule(
            Kind::Email,
            r"(?i)\b(?:moc|ten|gro|ude|vog|oi|em|ed|rf|se|tp|rb|ku|oc|ti|ln|eb|hc|ta|xm|ra|ac|ua|ue)\.(?:[\p{L}\p{N}-]+\.)*[\p{L}\p{N}-]+@[\p{L}\p{N}._%+-]*[\p{L}\p{N}]",
            0,
            keep,
        ),
        rule(
            Kind::Email,
            r"(?i)[\p{L}\p{N}._%+-]+\s*[(\[{<]\s*(?:at|arroba|arobase)\s*[)\]}>]\s*[\p{L}\p{N}-]+(?:(?:\s*[(\[{<]\s*(?:dot|punto|point|punkt|ponto)\s*[)\]}>]\s*|\.)[\p{L}\p{N}-]+)+",
            0,
            |text, range| {
                text[range.clone()]
                    .rsplit(|c: char| !c.is_alphanumeric())
                    .next()
                    .filter(|tld| tld.len() >= 2 && tld.chars().all(char::is_alphabetic))
                    .map(|_| range)
            },
        ),
        rule(
            Kind::Email,
            r"(?i)[\p{L}\p{N}._%+-]+ (?:at|arroba) [\p{L}\p{N}-]+(?: (?:dot|punto|ponto) [\p{L}\p{N}-]+)* (?:dot|punto|ponto) (?:com|net|org|edu|gov|io|me|de|fr|es|pt|br|uk|co|it|nl|be|ch|at|mx|ar|ca|au|eu|info)\b",
            0,
            keep,
        ),
        rule(
            Kind::User,
            r#"(?i)[\\/]+(?:users|home|documents and settings)[\\/]+([^\\/\n"<>|:*?]{1,64})"#,
            1,
            home_user,
        ),
        rule(
            Kind::Name,
            r"(?:^|[^\p{L}\p{N}_])(\p{Lu}\p{Ll}{1,20})['’]s\s+(?:iPhone|iPad|iPod|iMac|MacBook|Mac|Apple Watch|Galaxy|Pixel|phone|Phone|laptop|PC)\b",
            1,
            person_name,
        ),
        rule(
            Kind::Name,
            r"(?:^|[^\p{L}\p{N}_])(\p{Lu}\p{Ll}{1,20})s-(?:iPhone|iPad|MacBook|iMac|Mac)\b",
            1,
            person_name,
        ),
        rule(
            Kind::Name,
            r"\b(?:iPhone|iPad|iPod|MacBook|Galaxy|Pixel)\s+(?:de|von|di|da|do|du)\s+(\p{Lu}\p{Ll}{1,20})",
            1,
            person_name,
        ),
        // --- Device identifiers -------------------------------------------
        rule(Kind::DeviceId, r#"(?i)MobileSync[\\/]+Backup[\\/]+([^\\/\s"'<>|]{8,64})"#, 1, |text, range| {
            (!text[range.clone()].starts_with('[')).then_some(range)
        }),
        rule(Kind::DeviceId, r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", 0, keep),
        rule(Kind::DeviceId, r"(?i)\b[0-9a-f]{8}-[0-9a-f]{16}\b", 0, keep),
        rule(Kind::DeviceId, r"(?i)\b[0-9a-f]{40}\b", 0, keep),
        rule(Kind::DeviceId, r"(?i)\b[0-9a-f]{2}(?:[:-][0-9a-f]{2}){5}\b", 0, keep),
        rule(
            Kind::DeviceId,
            r"(?i)\b(?:udid|ecid|android[ _-]?id|device[ _-]?id|gsf[ _-]?id|ssaid|advertising[ _-]?id|idfa|idfv)(?:\s*[:=#]\s*|\s+)(?:is\s+)?((?:0x)?[0-9a-f][0-9a-f-]{7,})\b",
            1,
            |text, range| text[range.clone()].chars().any(|c| c.is_ascii_digit()).then_some(range),
        ),
        rule(
            Kind::Imei,
            r"(?i)\b(?:imei(?:sv|[12])?(?:\s[12]\s*:)?|meid|esn)(?:\s+(?:is|number|no\.?))?(?:\s*[:=#]\s*|\s+)([0-9a-f]{14}\b|\d[\d /-]{6,28}\d)",
            1,
            labelled_device_number,
        ),
        rule(
            Kind::Serial,
            r"(?i)\b(?:serial(?:[ _-]?(?:number|no\.?|num|#))?|s/n|sn|seriennummer|n(?:u|ú)mero de s(?:e|é)rie|n(?:u|ú)mero de serie|n[°º] de s(?:e|é)rie)(?:\s*[:=#]\s*|\s+)(?:(?:is|es|est|ist|é)\s+)?([A-Za-z0-9][A-Za-z0-9-]{5,19})\b",
            1,
            |text, range| text[range.clone()].chars().any(|c| c.is_ascii_digit()).then_some(range),
        ),
        rule(
            Kind::Iccid,
            r"(?i)\b(?:iccid|eid|sim(?:[ -]card)? (?:number|no\.?|serial))(?:\s*[:=#]\s*|\s+)(\d[\d -]{10,38}\d)",
            1,
            |text, range| (18..=32).contains(&digits(&text[range.clone()])).then_some(range),
        ),
        rule(
            Kind::Phone,
            r"(?i)\b(?:phone(?:\s*(?:number|no\.?|#))?|tel(?:ephone)?|mobile(?:\s*number)?|cell(?:\s*phone)?|whats ?app|n(?:u|ú)mero de tel(?:e|é)fono|t(?:e|é)l(?:e|é)phone|telefon(?:nummer)?|handy(?:nummer)?|telefone|celular|m(?:o|ó)vil|portable)\.?(?:\s*[:=#]\s*|\s+)(\+?\(?\d[\d ()./-]{5,20}\d)",
            1,
            |text, range| phone(text, range, 7, 15),
        ),
        // --- Numbers that are identifiers by their own shape --------------
        rule(Kind::Iccid, r"\b89(?:[ -]?\d){17,18}\b", 0, |text, range| luhn(&text[range.clone()]).then_some(range)),
        rule(Kind::Card, r"\b(?:\d{4}[ -]?){3}\d{4}\b|\b3[47]\d{2}[ -]\d{6}[ -]\d{5}\b", 0, |text, range| {
            (luhn(&text[range.clone()]) && standalone(text, &range)).then_some(range)
        }),
        rule(Kind::Imei, r"\b\d{2}[ /-]?\d{6}[ /-]?\d{6}[ /-]?\d\b", 0, |text, range| {
            (luhn(&text[range.clone()]) && standalone(text, &range)).then_some(range)
        }),
        rule(Kind::Imei, r"\b\d{18}\b", 0, |text, range| standalone(text, &range).then_some(range)),
        rule(Kind::Imei, r"\b[A-F9][0-9A-F]{13}\b", 0, |text, range| {
            let found = &text[range.clone()];
            (has_letter_and_digit(found) && standalone(text, &range)).then_some(range)
        }),
        // Apple's app-specific passwords and Recovery Keys, BitLocker keys.
        rule(Kind::Password, r"\b[a-z]{4}-[a-z]{4}-[a-z]{4}-[a-z]{4}\b", 0, keep),
        rule(Kind::Password, r"\b[A-Z0-9]{4}(?:-[A-Z0-9]{4}){6}\b|\b\d{6}(?:-\d{6}){7}\b", 0, keep),
        rule(Kind::Token, r"[A-Za-z0-9_+/-]{20,}={0,2}", 0, random_string),
        rule(Kind::Serial, r"\b[A-HJ-NP-Z0-9]{10,12}\b", 0, apple_serial),
        // --- Network addresses --------------------------------------------
        rule(Kind::Ip, r"\b(?:\d{1,3}\.){3}\d{1,3}\b", 0, public_ipv4),
        rule(Kind::Ip, r"(?i)\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b", 0, keep),
        rule(Kind::Ip, r"(?i)\b(?:[0-9a-f]{1,4}:){1,6}:(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,5})?", 0, compressed_ipv6),
        // --- Phone numbers, international then national -------------------
        rule(Kind::Phone, r"(?:\+|\b00)[1-9][0-9 ().-]{6,22}[0-9]", 0, |text, range| {
            let skip = if text[range.clone()].starts_with("00") { 2 } else { 0 };
            phone(text, range, 8 + skip, 15 + skip)
        }),
        rule(Kind::Phone, r"(?:\b1[ .-])?(?:\([2-9]\d{2}\) ?|\b[2-9]\d{2}[ .-])\d{3}[ .-]\d{4}\b", 0, |text, range| {
            same_separators(&text[range.clone()]).then(|| phone(text, range, 10, 11)).flatten()
        }),
        rule(Kind::Phone, r"\(\d{2}\) ?9?\d{4}[ -]?\d{4}\b|\b\d{2} 9\d{4}-\d{4}\b", 0, |text, range| {
            phone(text, range, 10, 11)
        }),
        rule(
            Kind::Phone,
            r"(?:\(0\d{1,4}\) ?|\b0[1-9]\d{0,4}[ ./-]?)\d{2,8}(?:[ ./-]?\d{2,8}){0,3}\b",
            0,
            |text, range| phone(text, range, 10, 12).filter(|range| !looks_like_date(&text[range.clone()])),
        ),
        rule(Kind::Phone, r"\b[6-9]\d{2}(?:[ .-]?\d{3}){2}\b|\b[6-9]\d{2}(?: \d{2}){3}\b", 0, |text, range| {
            phone(text, range, 9, 9)
        }),
    ]
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_compiles_with_ascii_boundaries() {
        // Building the rules checks each (`rule`'s assertion).
        assert!(RULES.len() > 30);
    }
}

//! Removes personal data from user text before anything is stored, logged or
//! matched: e-mail addresses, phone numbers, names in device names, user
//! names in paths, device numbers and identifiers, card numbers, passwords,
//! tokens, links carrying them and public IP addresses. Each kind is
//! replaced by a bracketed tag, so an error message keeps its shape and
//! still diagnoses the same. The shapes themselves live in `redact/rules.rs`.
//!
//! Run it on sanitised text (`text::sanitize`): data padded with invisible
//! characters (`a\u{200B}nn@…`) is only whole again once they are gone.

mod checks;
mod rules;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::LazyLock;

use regex_automata::util::captures::Captures;
use regex_automata::util::iter::Searcher;
use regex_automata::util::pool::Pool;
use regex_automata::{Input, meta};

/// A kind of personal data, named in the tag that replaces it. The order is
/// the order in which the notice to the user lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// An e-mail address (Apple ID, Google account), masked and spelled-out
    /// forms included.
    Email,
    /// A phone number, international or national.
    Phone,
    /// A person's name in a device name (`Ann's iPhone`, `iPhone de Ana`).
    Name,
    /// A user name in a home-directory path or a shell prompt.
    User,
    /// An IMEI, IMEISV, MEID or ESN.
    Imei,
    /// A SIM card number (ICCID) or eSIM EID.
    Iccid,
    /// A device serial number.
    Serial,
    /// A UDID, backup folder name, Android ID, MAC address or other device identifier.
    DeviceId,
    /// A payment card number.
    Card,
    /// A password, passcode, app-specific password or recovery key.
    Password,
    /// An access token, API key, bot token or private key.
    Token,
    /// A web address carrying a credential or a private share link.
    Url,
    /// A public IP address.
    Ip,
}

impl Kind {
    /// Every kind, in order.
    pub const ALL: [Kind; 13] = [
        Kind::Email,
        Kind::Phone,
        Kind::Name,
        Kind::User,
        Kind::Imei,
        Kind::Iccid,
        Kind::Serial,
        Kind::DeviceId,
        Kind::Card,
        Kind::Password,
        Kind::Token,
        Kind::Url,
        Kind::Ip,
    ];

    /// The tag written in place of the data.
    pub fn tag(self) -> &'static str {
        match self {
            Kind::Email => "[email]",
            Kind::Phone => "[phone]",
            Kind::Name => "[name]",
            Kind::User => "[user]",
            Kind::Imei => "[imei]",
            Kind::Iccid => "[iccid]",
            Kind::Serial => "[serial]",
            Kind::DeviceId => "[device-id]",
            Kind::Card => "[card]",
            Kind::Password => "[password]",
            Kind::Token => "[token]",
            Kind::Url => "[url]",
            Kind::Ip => "[ip]",
        }
    }
}

/// Redacted text and the kinds that were removed, in a stable order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redacted {
    /// The text with every finding replaced by its tag.
    pub text: String,
    /// Kinds found, each once, in `Kind` order.
    pub removed: Vec<Kind>,
}

/// Replaces every personal datum in `text` with its tag.
///
/// Every rule runs once over the original text, so a tag written by one
/// rule can never be half-matched by the next. Findings are kept by rule
/// priority: one overlapping an earlier finding is dropped.
pub fn redact(text: &str) -> Redacted {
    // Start of each kept finding → its end and kind; findings never overlap.
    let mut found: BTreeMap<usize, (usize, Kind)> = BTreeMap::new();
    let mut scratch = SCRATCH.get();
    for (rule, (cache, captures)) in rules::RULES.iter().zip(scratch.iter_mut()) {
        // Every match, left to right, as `Regex::captures_iter` gives them;
        // capture groups are only asked for where a rule needs one.
        let mut matches = Searcher::new(Input::new(text));
        while let Some(whole) = matches.advance(|input| match rule.group {
            0 => Ok(rule.regex.search_with(cache, input)),
            _ => {
                rule.regex.search_captures_with(cache, input, captures);
                Ok(captures.get_match())
            }
        }) {
            let part = match rule.group {
                0 => Some(whole.range()),
                group => captures.get_group(group).map(|span| span.range()),
            };
            let Some(range) = part.and_then(|part| (rule.check)(text, part)) else { continue };
            if range.is_empty() || overlaps(&found, &range) {
                continue;
            }
            found.insert(range.start, (range.end, rule.kind));
        }
    }
    drop(scratch);
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut removed = Vec::new();
    for (start, (end, kind)) in found {
        out.push_str(&text[last..start]);
        out.push_str(kind.tag());
        last = end;
        if !removed.contains(&kind) {
            removed.push(kind);
        }
    }
    out.push_str(&text[last..]);
    removed.sort();
    Redacted { text: out, removed }
}

/// One thread's search state for every rule, in rule order.
type Scratch = Vec<(meta::Cache, Captures)>;

/// Each thread redacting at once takes one scratch for the whole message.
static SCRATCH: LazyLock<Pool<Scratch, fn() -> Scratch>> = LazyLock::new(|| {
    Pool::new(|| rules::RULES.iter().map(|rule| (rule.regex.create_cache(), rule.regex.create_captures())).collect())
});

/// Whether `range` overlaps a finding already kept. Kept findings are
/// disjoint, so only the last one starting before `range` ends can.
fn overlaps(found: &BTreeMap<usize, (usize, Kind)>, range: &Range<usize>) -> bool {
    found.range(..range.end).next_back().is_some_and(|(_, (end, _))| *end > range.start)
}

#[cfg(test)]
mod tests {
    use super::Kind::*;
    use super::*;

    /// Shapes people paste, each with what must be left of it.
    const FOUND: &[(&str, &str, &[Kind])] = &[
        // E-mail addresses.
        ("mail me at ann.smith+x@icloud.com please", "mail me at [email] please", &[Email]),
        ("Apple ID: j.doe@mail.example.co.uk.", "Apple ID: [email].", &[Email]),
        ("ann@xn--mnchen-3ya.de", "[email]", &[Email]),
        ("josé.müller@correo.es", "[email]", &[Email]),
        ("**ann@gmail.com**", "**[email]**", &[Email]),
        ("<b>ann@gmail.com</b>", "<b>[email]</b>", &[Email]),
        ("@everyone ann@gmail.com", "@everyone [email]", &[Email]),
        ("Enter the Apple ID password for \"j.doe@…\".", "Enter the Apple ID password for \"[email]\".", &[Email]),
        ("signed in as j•••@icloud.com", "signed in as [email]", &[Email]),
        ("account a*****9@gmail.com", "account [email]", &[Email]),
        ("write ann (at) icloud (dot) com", "write [email]", &[Email]),
        ("write ann [at] icloud [dot] com now", "write [email] now", &[Email]),
        ("it's ann at icloud dot com", "it's [email]", &[Email]),
        ("es ana arroba gmail punto com", "es [email]", &[Email]),
        // Phone numbers.
        ("call +44 20 7946 0958 now", "call [phone] now", &[Phone]),
        ("+1 (555) 123-4567", "[phone]", &[Phone]),
        ("+33 6 12 34 56 78", "[phone]", &[Phone]),
        ("+4915123456789", "[phone]", &[Phone]),
        ("0044 20 7946 0958", "[phone]", &[Phone]),
        ("or (555) 123-4567", "or [phone]", &[Phone]),
        ("ring 555-123-4567.", "ring [phone].", &[Phone]),
        ("1-800-275-2273", "[phone]", &[Phone]),
        ("UK 07700 900123 or 020 7946 0958", "UK [phone] or [phone]", &[Phone]),
        ("(020) 7946 0958", "[phone]", &[Phone]),
        ("mon numéro 06 12 34 56 78", "mon numéro [phone]", &[Phone]),
        ("06.12.34.56.78", "[phone]", &[Phone]),
        ("0612345678", "[phone]", &[Phone]),
        ("Handy 0151 23456789", "Handy [phone]", &[Phone]),
        ("ruf 0151/23456789 an", "ruf [phone] an", &[Phone]),
        ("030 12345678", "[phone]", &[Phone]),
        ("móvil 612 345 678", "móvil [phone]", &[Phone]),
        ("612345678", "[phone]", &[Phone]),
        ("telemóvel 912 345 678", "telemóvel [phone]", &[Phone]),
        ("ES 612 34 56 78", "ES [phone]", &[Phone]),
        ("meu celular (11) 91234-5678", "meu celular [phone]", &[Phone]),
        ("fixo (11) 1234-5678", "fixo [phone]", &[Phone]),
        ("whatsapp 11 91234-5678", "whatsapp [phone]", &[Phone]),
        ("phone: 5551234567", "phone: [phone]", &[Phone]),
        ("Tel. 1234567", "Tel. [phone]", &[Phone]),
        // Names in device names, user names in paths and prompts.
        ("Backing up \"Ann's iPhone\"", "Backing up \"[name]'s iPhone\"", &[Name]),
        ("María’s iPad won't back up", "[name]’s iPad won't back up", &[Name]),
        ("Élodie's iPhone", "[name]'s iPhone", &[Name]),
        ("copia del iPhone de María", "copia del iPhone de [name]", &[Name]),
        ("Sicherung von iPhone von Anna", "Sicherung von iPhone von [name]", &[Name]),
        ("ann@Anns-MacBook-Pro ~ % ls", "[user] ~ % ls", &[User]),
        ("Anns-MacBook-Pro.local", "[name]s-MacBook-Pro.local", &[Name]),
        (r"C:\Users\annsmith\Apple\MobileSync", r"C:\Users\[user]\Apple\MobileSync", &[User]),
        (r"C:\Users\Ann Smith\AppData\Roaming", r"C:\Users\[user]\AppData\Roaming", &[User]),
        ("C:/Users/ann/Music/iTunes", "C:/Users/[user]/Music/iTunes", &[User]),
        (r#"{"path":"C:\\Users\\ann\\Apple"}"#, r#"{"path":"C:\\Users\\[user]\\Apple"}"#, &[User]),
        (
            r"C:\Documents and Settings\ann\Application Data",
            r"C:\Documents and Settings\[user]\Application Data",
            &[User],
        ),
        (
            "/Users/ann/Library/Application Support/MobileSync",
            "/Users/[user]/Library/Application Support/MobileSync",
            &[User],
        ),
        ("~ is /Users/ann.", "~ is /Users/[user].", &[User]),
        ("/home/ann/.config", "/home/[user]/.config", &[User]),
        ("/mnt/c/Users/ann/Desktop", "/mnt/c/Users/[user]/Desktop", &[User]),
        // Device numbers and identifiers.
        ("IMEI 35 209900 176148 1", "IMEI [imei]", &[Imei]),
        ("my imei is 352099001761481", "my imei is [imei]", &[Imei]),
        ("35-209900-176148-1", "[imei]", &[Imei]),
        ("IMEI 2: 35 209900 176148 1", "IMEI 2: [imei]", &[Imei]),
        ("IMEISV: 3520990017614823", "IMEISV: [imei]", &[Imei]),
        ("MEID: A10000009296F2", "MEID: [imei]", &[Imei]),
        ("A10000009296F2", "[imei]", &[Imei]),
        ("MEID 268435456000000000", "MEID [imei]", &[Imei]),
        ("ICCID: 8944 5000 0000 0000 0018", "ICCID: [iccid]", &[Iccid]),
        ("8944500000000000014", "[iccid]", &[Iccid]),
        ("serial F2LXK0ABCDEF", "serial [serial]", &[Serial]),
        ("C02XK0ABJG5H", "[serial]", &[Serial]),
        ("new serial KX7R2V9WQ3 here", "new serial [serial] here", &[Serial]),
        ("S/N: R58N123ABCD", "S/N: [serial]", &[Serial]),
        ("Serial number: rf8n30abcde", "Serial number: [serial]", &[Serial]),
        ("Seriennummer: 21011234567", "Seriennummer: [serial]", &[Serial]),
        ("udid 00008110-001A2B3C4D5E801E", "udid [device-id]", &[DeviceId]),
        ("UDID: 2b6f0cc904d137be2e1730235f5664094b831186", "UDID: [device-id]", &[DeviceId]),
        (r"Backup\00008110-001A2B3C4D5E801E\Manifest.db", r"Backup\[device-id]\Manifest.db", &[DeviceId]),
        (
            "~/Library/Application Support/MobileSync/Backup/my-old-backup-1/",
            "~/Library/Application Support/MobileSync/Backup/[device-id]/",
            &[DeviceId],
        ),
        ("guid 3F2504E0-4F89-11D3-9A0C-0305E82C3301", "guid [device-id]", &[DeviceId]),
        ("Android ID: 9774d56d682e549c", "Android ID: [device-id]", &[DeviceId]),
        ("Wi-Fi Address 3c:22:fb:12:ab:9e", "Wi-Fi Address [device-id]", &[DeviceId]),
        ("ECID: 0x1A2B3C4D5E6F", "ECID: [device-id]", &[DeviceId]),
        ("card 4111 1111 1111 1111", "card [card]", &[Card]),
        ("amex 3782 822463 10005", "amex [card]", &[Card]),
        // Passwords, tokens, keys and links carrying them.
        ("password=hunter2&x=1", "password=[password]&x=1", &[Password]),
        ("my password is Summer2023!", "my password is [password]", &[Password]),
        ("passcode is 123456.", "passcode is [password].", &[Password]),
        ("Password: \"open sesame 1\"", "Password: [password]", &[Password]),
        ("mot de passe : Azerty12", "mot de passe : [password]", &[Password]),
        ("app password abcd-efgh-ijkl-mnop", "app password [password]", &[Password]),
        ("Recovery Key: AB12-CD34-EF56-GH78-JK90-LM12-NP34", "Recovery Key: [password]", &[Password]),
        ("key=abc123", "key=[token]", &[Token]),
        ("Authorization: Bearer ya29.a0AfH6SMBx3k9Lq7", "Authorization: Bearer [token]", &[Token]),
        (
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "[token]",
            &[Token],
        ),
        ("bot 123456789:AAHk2j3h4k5j6h7k8j9h0k1j2h3k4j5h6k7", "bot [token]", &[Token]),
        (
            "DISCORD_BOT_TOKEN=MTA5ODc2NTQzMjEwOTg3NjU0Mw.GhIjKl.abcdEFGHijklMNOPqrstUVWXyz0123456789",
            "DISCORD_BOT_TOKEN=[token]",
            &[Token],
        ),
        ("AKIAIOSFODNN7EXAMPLE", "[token]", &[Token]),
        ("aws_secret_access_key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_access_key [token]", &[Token]),
        ("ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5", "[token]", &[Token]),
        ("api key: sk_live_51HxYzAbCdEf", "api key: [token]", &[Token]),
        ("X9fK2mQ7vR4tL8wZ1pN6sJ3hD5gB0cY2", "[token]", &[Token]),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\nthen", "[token]\nthen", &[Token]),
        ("https://x.test/cb?token=abc123&x=1", "[url]", &[Url]),
        ("see https://ann:s3cret@nas.example.com/backup.", "see [url].", &[Url]),
        ("https://api.telegram.org/bot123456:AAHk2j3h4k5j6h7k8j9h0k1j2h3k4j5h6k7/getMe", "[url]", &[Url]),
        ("(https://s3.example.com/b?X-Amz-Signature=abc)", "([url])", &[Url]),
        ("https://www.icloud.com/iclouddrive/0aBcD3fGh1JkLmN0pQrStUvWx#report", "[url]", &[Url]),
        // Network addresses.
        ("my IP is 81.2.69.142", "my IP is [ip]", &[Ip]),
        ("from 2001:db8:85a3::8a2e:370:7334", "from [ip]", &[Ip]),
        // Several at once.
        (
            "I'm ann@icloud.com, +44 20 7946 0958, IMEI 352099001761481",
            "I'm [email], [phone], IMEI [imei]",
            &[Email, Phone, Imei],
        ),
    ];

    /// Text diagnosis needs, from the seeds, the corpus and what people
    /// write about their phones: none of it is personal.
    const KEPT: &[&str] = &[
        "The last backup could not be completed.",
        "iTunes could not back up the iPhone because an unknown error occurred (-54). Error 0xE8000084",
        "iTunes could not connect to this iPhone. An unknown error occurred (0xE8000015).",
        "The iPhone could not be restored. An unknown error occurred (4013).",
        "Error 0x80070057, HRESULT -2147024891, code 9006, error 1671, MBErrorDomain/205",
        "Stuck at 43% since 2024-05-01 10:22, need 5.2 GB, iOS 17.4.1",
        "Not enough iCloud storage. 4.87 GB of 5 GB used",
        "[2024-05-02 19:40] iTunes: the backup was corrupt or not compatible with the iPhone",
        "on 05.01.2024 at 10:22:33, again 01/05/2024 and 2024/05/01",
        "The iPhone \"iPhone\" cannot be used because it requires iTunes version 12.12.4 or later.",
        "iTunes 12.13.2.3 on Windows 11 23H2, macOS 14.4.1 (23E224)",
        "iPhone 15 Pro Max 256GB, iPhone SE, iPad Air, Galaxy S23 Ultra SM-S918B, SM-G991B, Pixel 8 Pro",
        "firmware G991BXXU5CVJB, build UP1A.231005.007, model MQ9T3LL/A, A2848",
        "Windows shows Local Disk (C:) 2.1 GB free of 237 GB and the iphone backup in itunes just fails",
        "Smart Switch PC backup to my D: drive fails, D: has 800 MB free",
        r"%USERPROFILE%\Apple\MobileSync\Backup and %APPDATA%\Apple Computer\MobileSync",
        "~/Library/Application Support/MobileSync/Backup/",
        "/Users/Shared/backup and C:\\Users\\Public\\Music",
        "Internal storage /storage/emulated/0/SmartSwitch/backup is full",
        "Enter the password to unlock your iPhone backup",
        "wrong password: I typed it twice, the password is wrong",
        "Password incorrect. Token expired. token: expired",
        "https://support.apple.com/en-us/HT204904 and https://www.icloud.com/",
        "https://support.google.com/android/answer/2819582?hl=en",
        "router 192.168.1.1, DNS 8.8.8 and 10.0.0.2",
        "1.2 million photos, 612 345 678 bytes, 128 256 512 GB",
        "I have 12345 photos and 3 000 videos, 150 MB left, 180gb free",
        "Speicher: 64 GB, noch 1,5 GB frei; 99,9 % belegt",
        "le téléphone a 128 Go, il reste 2,3 Go",
        "@everyone <b>help</b> **backup** __failed__",
        "It's iPhone storage, that's phone storage; Apple's iCloud, Finder's iPhone list, Windows's phone link",
        "Backup of iPhone de Apple failed",
        "com.apple.MobileBackup.BackupAgent2 NSPOSIXErrorDomain kAMDMobileImageMounterImageMountFailed",
        "Samsung_Smart-Switch-backup-2024-05-01-10-22 and SM-G991B_20240501_102233",
        "the serial port, serial number on the box, IMEI is on the tray",
        "phone storage full, phone 2 of 3, mobile data 20 GB",
        "in 2019 I set it, 1 234 photos",
        "Unix time 1714567890123 ms",
    ];

    #[test]
    fn removes_each_kind() {
        let mut wrong = Vec::new();
        for (input, expected, kinds) in FOUND {
            let redacted = redact(input);
            if redacted.text != *expected || redacted.removed != *kinds {
                wrong.push(format!(
                    "{input:?}\n  gave {:?} {:?}\n  want {expected:?} {kinds:?}",
                    redacted.text, redacted.removed
                ));
            }
            assert_eq!(redact(&redacted.text).text, redacted.text, "tags are never redacted again: {input}");
        }
        assert!(wrong.is_empty(), "{} of {} cases differ:\n{}", wrong.len(), FOUND.len(), wrong.join("\n"));
        for kind in Kind::ALL {
            assert!(FOUND.iter().any(|(_, _, kinds)| kinds.contains(&kind)), "no positive case for {kind:?}");
        }
    }

    #[test]
    fn keeps_what_diagnosis_needs() {
        let changed: Vec<String> = KEPT
            .iter()
            .map(|text| (text, redact(text)))
            .filter(|(text, redacted)| redacted.text != **text)
            .map(|(text, redacted)| format!("{text:?}\n  became {:?}", redacted.text))
            .collect();
        assert!(changed.is_empty(), "{} of {} texts changed:\n{}", changed.len(), KEPT.len(), changed.join("\n"));
    }
}

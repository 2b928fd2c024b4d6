//! The languages fixbot speaks, how a platform's locale hint ("pt-BR") maps
//! to one, and a small detector that guesses the language of a pasted
//! message from its common words.
//!
//! The detector is deliberately simple so that its answer can be explained:
//! it counts the words of the message that are in each language's short
//! list of stopwords and backup keywords, and names a language only when it
//! has at least [`MIN_HITS`] such words and more than any other language.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

/// A language fixbot can answer in. English is the source of every text;
/// the others are translations in `flows/i18n/<code>/`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// English, the language the flows are written in.
    #[default]
    En,
    /// Spanish.
    Es,
    /// French.
    Fr,
    /// German.
    De,
    /// Portuguese.
    Pt,
}

/// Fewest known words before the detector names a language.
pub const MIN_HITS: usize = 2;

impl Lang {
    /// Every language, English first.
    pub const ALL: [Lang; 5] = [Lang::En, Lang::Es, Lang::Fr, Lang::De, Lang::Pt];

    /// The two-letter ISO 639-1 code, as used for folder names and `/language`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Es => "es",
            Lang::Fr => "fr",
            Lang::De => "de",
            Lang::Pt => "pt",
        }
    }

    /// The language's own name for itself, as shown to users.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Es => "Español",
            Lang::Fr => "Français",
            Lang::De => "Deutsch",
            Lang::Pt => "Português",
        }
    }

    /// Whether this is English, the default (for serde's `skip_serializing_if`).
    pub fn is_english(&self) -> bool {
        *self == Lang::En
    }

    /// Parses a code or a name: `es`, `ES`, `español`, `spanish`.
    pub fn parse(text: &str) -> Option<Lang> {
        let word = crate::text::squash(text);
        Lang::ALL
            .into_iter()
            .find(|lang| word == lang.code() || word == crate::text::squash(lang.name()) || word == lang.english_name())
    }

    fn english_name(self) -> &'static str {
        match self {
            Lang::En => "english",
            Lang::Es => "spanish",
            Lang::Fr => "french",
            Lang::De => "german",
            Lang::Pt => "portuguese",
        }
    }

    /// Maps a platform's locale hint to a language: Telegram's
    /// `language_code` ("es"), Discord's `locale` ("pt-BR", "es-ES"), the
    /// first tag of an HTTP `Accept-Language` ("fr-CH, fr;q=0.9"). Only the
    /// primary subtag counts; a language fixbot does not speak gives `None`.
    pub fn from_hint(hint: &str) -> Option<Lang> {
        let first = hint.split([',', ';']).next()?.trim();
        let primary = first.split(['-', '_']).next()?.to_ascii_lowercase();
        Lang::ALL.into_iter().find(|lang| lang.code() == primary)
    }

    /// The words the detector counts for this language: stopwords that are
    /// rare in the other four, and the backup words people paste. Folded
    /// (no accents), lower-case.
    fn words(self) -> &'static [&'static str] {
        match self {
            Lang::En => &[
                "the",
                "is",
                "my",
                "not",
                "could",
                "be",
                "because",
                "there",
                "enough",
                "available",
                "this",
                "it",
                "and",
                "with",
                "backup",
                "failed",
                "cannot",
                "can",
                "t",
                "won",
                "doesn",
                "storage",
                "phone",
                "of",
                "to",
                "what",
                "does",
                "keeps",
            ],
            Lang::Es => &[
                "el",
                "la",
                "los",
                "las",
                "del",
                "una",
                "se",
                "pudo",
                "copia",
                "seguridad",
                "puede",
                "hay",
                "mi",
                "suficiente",
                "espacio",
                "almacenamiento",
                "porque",
                "para",
                "pero",
                "esta",
                "esto",
                "tengo",
                "hacer",
                "funciona",
                "falla",
                "fallo",
                "completar",
                "realizar",
                "y",
                "que",
                "es",
                "con",
            ],
            Lang::Fr => &[
                "le",
                "les",
                "des",
                "une",
                "pas",
                "ne",
                "sauvegarde",
                "impossible",
                "mon",
                "ma",
                "est",
                "il",
                "je",
                "n",
                "d",
                "l",
                "j",
                "assez",
                "espace",
                "stockage",
                "echoue",
                "echec",
                "pourquoi",
                "avec",
                "et",
                "sur",
                "qui",
                "dans",
                "reste",
                "bloquee",
            ],
            Lang::De => &[
                "der",
                "die",
                "das",
                "ist",
                "nicht",
                "ein",
                "eine",
                "kann",
                "konnte",
                "sicherung",
                "backup",
                "mein",
                "meine",
                "und",
                "mit",
                "genugend",
                "speicher",
                "speicherplatz",
                "fehlgeschlagen",
                "werden",
                "wird",
                "ich",
                "es",
                "auf",
                "zu",
                "bleibt",
                "hangt",
                "warum",
            ],
            Lang::Pt => &[
                "o",
                "os",
                "as",
                "um",
                "uma",
                "nao",
                "foi",
                "possivel",
                "backup",
                "meu",
                "minha",
                "de",
                "do",
                "da",
                "e",
                "espaco",
                "armazenamento",
                "suficiente",
                "falhou",
                "porque",
                "com",
                "fazer",
                "concluir",
                "esta",
                "tenho",
                "celular",
                "nao",
                "funciona",
            ],
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What the detector counted for one message, for `why` and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The language named, when one had enough words and the most.
    pub lang: Option<Lang>,
    /// How many of the message's words each language knows, in [`Lang::ALL`] order.
    pub hits: [usize; 5],
}

/// Every word the detector counts, with the languages whose list has it, a
/// bit each in [`Lang::ALL`] order: one lookup a word, rather than a search
/// of every list (a pasted log has hundreds of words).
static KNOWN: LazyLock<HashMap<&'static str, u8>> = LazyLock::new(|| {
    let mut known = HashMap::new();
    for (index, lang) in Lang::ALL.into_iter().enumerate() {
        for word in lang.words() {
            *known.entry(*word).or_default() |= 1 << index;
        }
    }
    known
});

/// Guesses the language of `text` from its common words: see the module
/// documentation. Ties and short messages name no language.
pub fn detect(text: &str) -> Detection {
    let folded = crate::text::squash(text);
    let mut hits = [0; 5];
    for word in folded.split(' ').take(400) {
        let Some(&langs) = KNOWN.get(word) else { continue };
        for (index, slot) in hits.iter_mut().enumerate() {
            *slot += usize::from(langs & (1 << index) != 0);
        }
    }
    let best = (0..5).max_by_key(|&index| (hits[index], std::cmp::Reverse(index))).unwrap_or(0);
    let unique = hits.iter().enumerate().all(|(index, &count)| index == best || count < hits[best]);
    let lang = (hits[best] >= MIN_HITS && unique).then_some(Lang::ALL[best]);
    Detection { lang, hits }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_map_by_their_primary_subtag() {
        assert_eq!(Lang::from_hint("pt-BR"), Some(Lang::Pt));
        assert_eq!(Lang::from_hint("es"), Some(Lang::Es));
        assert_eq!(Lang::from_hint("fr-CH, fr;q=0.9, en;q=0.8"), Some(Lang::Fr));
        assert_eq!(Lang::from_hint("de_AT"), Some(Lang::De));
        assert_eq!(Lang::from_hint("en-US"), Some(Lang::En));
        assert_eq!(Lang::from_hint("ja"), None);
        assert_eq!(Lang::from_hint(""), None);
    }

    #[test]
    fn names_and_codes_parse() {
        assert_eq!(Lang::parse("ES"), Some(Lang::Es));
        assert_eq!(Lang::parse("español"), Some(Lang::Es));
        assert_eq!(Lang::parse("German"), Some(Lang::De));
        assert_eq!(Lang::parse("klingon"), None);
    }

    #[test]
    fn detects_the_language_of_common_pastes() {
        let cases = [
            ("No se pudo completar la copia de seguridad", Some(Lang::Es)),
            ("La sauvegarde a échoué, je n'ai pas assez d'espace", Some(Lang::Fr)),
            ("Das Backup ist fehlgeschlagen, nicht genügend Speicher", Some(Lang::De)),
            ("Não foi possível concluir o backup do meu celular", Some(Lang::Pt)),
            ("The last backup could not be completed because there is not enough storage", Some(Lang::En)),
            ("iCloud", None),
        ];
        for (text, expected) in cases {
            assert_eq!(detect(text).lang, expected, "{text}: {:?}", detect(text).hits);
        }
    }
}

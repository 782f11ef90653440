//! The project's texts of every alert type, from `data/texts.toml`: the English remediation hint, and the title,
//! short description and remediation hint in Arabic. English titles and descriptions are in the catalogue.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::catalogue::lookup;

/// The languages alerts can be written in.
pub const LOCALES: &[&str] = &["en", "ar"];

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AlertTexts {
    pub remediation: String,
    pub title_ar: String,
    pub description_ar: String,
    pub remediation_ar: String,
}

/// Title, description and remediation in one language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Localized<'a> {
    pub title: &'a str,
    pub description: &'a str,
    pub remediation: &'a str,
}

static TEXTS: LazyLock<BTreeMap<String, AlertTexts>> = LazyLock::new(|| {
    toml::from_str(include_str!("../data/texts.toml")).expect("data/texts.toml parses (checked by a test)")
});

pub fn texts(alert_type: &str) -> Option<&'static AlertTexts> {
    TEXTS.get(alert_type)
}

/// The texts of `alert_type` in `locale` (`en` or `ar`); `None` for an unknown type. An unknown locale gives
/// English: configurations are checked against `LOCALES` before they get here.
pub fn localized(alert_type: &str, locale: &str) -> Option<Localized<'static>> {
    let meta = lookup(alert_type)?;
    let texts = texts(alert_type)?;
    Some(if locale == "ar" {
        Localized { title: &texts.title_ar, description: &texts.description_ar, remediation: &texts.remediation_ar }
    } else {
        Localized { title: meta.title, description: meta.description, remediation: &texts.remediation }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::CATALOGUE;

    /// Written in Arabic: at least a third of its letters are Arabic (product and API names stay in Latin).
    fn arabic(text: &str) -> bool {
        let arabic = text.chars().filter(|c| ('\u{0600}'..='\u{06FF}').contains(c)).count();
        arabic >= 6 && arabic * 3 >= text.chars().filter(|c| c.is_alphabetic()).count()
    }

    #[test]
    fn every_alert_type_has_its_four_texts_and_nothing_else_is_listed() {
        for meta in CATALOGUE {
            let texts = texts(meta.id).unwrap_or_else(|| panic!("{} has no texts in data/texts.toml", meta.id));
            assert!(texts.remediation.len() > 20 && texts.remediation.is_ascii(), "{}: English remediation", meta.id);
            for (what, text) in [
                ("title_ar", &texts.title_ar),
                ("description_ar", &texts.description_ar),
                ("remediation_ar", &texts.remediation_ar),
            ] {
                assert!(arabic(text), "{}: {what} is not mostly Arabic: {text}", meta.id);
            }
        }
        assert_eq!(TEXTS.len(), CATALOGUE.len(), "texts for an ID the catalogue does not have");
    }

    #[test]
    fn the_locale_picks_the_language() {
        let en = localized("K8S_PrivilegedContainer", "en").unwrap();
        assert_eq!(en.title, "Privileged container created");
        assert!(en.remediation.contains("securityContext.privileged"));
        let ar = localized("K8S_PrivilegedContainer", "ar").unwrap();
        assert!(ar.title.starts_with("إنشاء حاوية مميزة"));
        assert!(arabic(ar.description) && arabic(ar.remediation));
        assert_eq!(localized("K8S_Nope", "en"), None);
    }
}

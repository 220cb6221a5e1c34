//! The texts an int8 model is calibrated on at load: a few queries and passages from unlike
//! domains (biomedicine, software, law, news, cooking, finance), long enough that every layer
//! sees the activation ranges of real prose. Cross-encoders see every (query, passage) pair,
//! embedders every text.

use crate::error::Result;
use crate::tokenize::{Encoded, TextTokenizer};

const QUERIES: [&str; 4] = [
    "does vitamin D supplementation reduce the risk of respiratory infections?",
    "how do I roll back a database migration that failed halfway",
    "what are the tenant's rights when a landlord refuses to return the deposit",
    "best way to keep bread from going stale",
];

const PASSAGES: [&str; 6] = [
    "In a randomised, double-blind, placebo-controlled trial of 5,110 adults, monthly doses of \
     100,000 IU of vitamin D3 did not reduce the incidence of acute respiratory infection over a \
     median follow-up of 1.6 years (hazard ratio 0.97; 95% CI 0.88-1.06). Subgroup analyses by \
     baseline 25-hydroxyvitamin D concentration, age and season showed no benefit, although \
     participants who were deficient at enrolment had fewer hospital admissions.",
    "If a migration fails partway through, first check whether your database supports \
     transactional DDL. PostgreSQL wraps each migration in a transaction, so a failure leaves \
     the schema unchanged; MySQL commits every ALTER TABLE implicitly, so you must undo the \
     applied statements by hand, mark the migration as not applied in the schema_migrations \
     table, fix the script, and run it again.",
    "A landlord who withholds a security deposit must, within 30 days after the tenancy ends, \
     give the tenant an itemised statement of deductions for unpaid rent, cleaning and damage \
     beyond ordinary wear and tear. A landlord who fails to do so in bad faith may be liable \
     for up to twice the amount of the deposit in addition to actual damages (Civ. Code 1950.5).",
    "The central bank raised its benchmark rate by a quarter of a percentage point on Tuesday, \
     to 4.75%, the ninth increase in eighteen months, citing core inflation that remains \
     stubbornly above its 2% target. Markets had priced in the move; the yield on two-year \
     government bonds rose 6 basis points while the currency weakened slightly against the \
     dollar.",
    "Bread goes stale because its starch recrystallises, a process that is fastest at \
     refrigerator temperatures. Keep a loaf at room temperature, cut side down on a wooden \
     board or in a paper bag, for two or three days; for longer, slice it and freeze it in an \
     airtight bag, then toast the slices straight from the freezer.",
    "Der Patient wurde mit akuter Atemnot aufgenommen. Die Sauerstoffsättigung lag bei 88 %, \
     die Röntgenaufnahme zeigte beidseitige Infiltrate. Nach 48 Stunden unter Antibiotika und \
     Sauerstofftherapie besserte sich der Zustand deutlich.",
];

/// The calibration inputs of a model: query-passage pairs for a cross-encoder, single texts
/// for an embedder.
pub(crate) fn inputs(tokenizer: &TextTokenizer, cross_encoder: bool) -> Result<Vec<Encoded>> {
    if cross_encoder {
        QUERIES
            .iter()
            .flat_map(|query| PASSAGES.iter().map(move |passage| (query, passage)))
            .map(|(query, passage)| tokenizer.encode_pair(query, passage))
            .collect()
    } else {
        QUERIES.iter().chain(&PASSAGES).map(|text| tokenizer.encode_text(text)).collect()
    }
}

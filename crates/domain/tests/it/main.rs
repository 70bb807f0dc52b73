//! `tollgate-domain` from the outside: properties of the parsers every transport relies on.

mod proptests;

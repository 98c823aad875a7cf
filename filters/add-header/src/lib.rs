//! add-header: the seed's demo filter.

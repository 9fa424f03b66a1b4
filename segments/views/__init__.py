"""Segment and layer pages. `segments`: the segment list and a segment's page with its actions; `editor`: the
dynamic segment editor (the tags pages' rule builder and its live preview); `layers`: the RFM grid, class
migration and settings, and the AIPL, lifecycle and ladder distributions; `customer_pages`: the filters and the
panel the customer pages show through `customers.extensions` (registered in `SegmentsConfig.ready()`).

Segments are shared by everyone; every member, count and aggregate shown is limited to the customers the user may
see (segments.selectors). Managers (admins and operators) change segments and settings."""

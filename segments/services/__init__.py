"""Segment writes. `membership` holds the one statement that moves a segment to a new member set; `segments`
the operations on segments; `layers` the RFM, AIPL, lifecycle and ladder models."""

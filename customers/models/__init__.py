from customers.models.catalog import Channel, ChannelKind, Product
from customers.models.customer import (
    Consent,
    ConsentStatus,
    Customer,
    CustomerMerge,
    Gender,
    Identity,
    IdentityKind,
    MessageChannel,
    Note,
)
from customers.models.events import Event
from customers.models.groups import CommunityGroup, GroupMembership
from customers.models.orders import Order, OrderLine, OrderStatus
from customers.models.staff import AddWay, Relationship, RelationshipStatus, Staff, Transfer, TransferKind

__all__ = [
    "AddWay",
    "Channel",
    "ChannelKind",
    "CommunityGroup",
    "Consent",
    "ConsentStatus",
    "Customer",
    "CustomerMerge",
    "Event",
    "Gender",
    "GroupMembership",
    "Identity",
    "IdentityKind",
    "MessageChannel",
    "Note",
    "Order",
    "OrderLine",
    "OrderStatus",
    "Product",
    "Relationship",
    "RelationshipStatus",
    "Staff",
    "Transfer",
    "TransferKind",
]

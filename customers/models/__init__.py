from customers.models.attributes import AttributeType, CustomAttribute
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
from customers.models.outbox import DomainEvent, DomainEventKind
from customers.models.staff import AddWay, Relationship, RelationshipStatus, Staff, Transfer, TransferKind

__all__ = [
    "AddWay",
    "AttributeType",
    "Channel",
    "ChannelKind",
    "CommunityGroup",
    "Consent",
    "ConsentStatus",
    "CustomAttribute",
    "Customer",
    "CustomerMerge",
    "DomainEvent",
    "DomainEventKind",
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

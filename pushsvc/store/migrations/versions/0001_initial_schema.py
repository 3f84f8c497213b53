"""Initial schema: departments, subscribers and their audiences, domains, channels and consents,
policies, the delivery ledger, idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('departments',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('domains', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('api_key_hash', sa.String(length=64), nullable=False),
    sa.Column('key_prefix', sa.String(length=16), nullable=False),
    sa.Column('contact_email', sa.String(length=254), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_departments')),
    sa.UniqueConstraint('api_key_hash', name=op.f('uq_departments_api_key_hash')),
    sa.UniqueConstraint('name', name=op.f('uq_departments_name'))
    )
    op.create_table('idempotency_keys',
    sa.Column('department_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.SmallInteger(), nullable=False),
    sa.Column('response', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_idempotency_keys_department_id')),
    sa.PrimaryKeyConstraint('department_id', 'key', name=op.f('pk_idempotency_keys'))
    )
    op.create_table('policies',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('department_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('domain', sa.String(length=64), nullable=False),
    sa.Column('doc_number', sa.String(length=120), nullable=True),
    sa.Column('url', sa.String(length=1000), nullable=True),
    sa.Column('interpretation_url', sa.String(length=1000), nullable=True),
    sa.Column('disclosure', sa.String(length=16), nullable=False),
    sa.Column('produced_on', sa.Date(), nullable=True),
    sa.Column('effective_on', sa.Date(), nullable=True),
    sa.Column('expires_on', sa.Date(), nullable=True),
    sa.Column('publish_at', sa.DateTime(), nullable=True),
    sa.Column('targeting', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('channels', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('revision', sa.Integer(), server_default='1', nullable=False),
    sa.Column('fanout_cursor', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), server_default='0', nullable=False),
    sa.Column('matched', sa.Integer(), server_default='0', nullable=False),
    sa.Column('published_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_policies_department_id')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policies'))
    )
    with op.batch_alter_table('policies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_policies_department_id_id'), ['department_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_policies_status_publish_at'), ['status', 'publish_at'], unique=False)

    op.create_table('subscribers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('phone', sa.String(length=20), nullable=True),
    sa.Column('uscc', sa.String(length=18), nullable=True),
    sa.Column('wechat_openid', sa.String(length=64), nullable=True),
    sa.Column('wechat_webhook', sa.String(length=500), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('frequency', sa.String(length=10), server_default='immediate', nullable=False),
    sa.Column('locale', sa.String(length=8), server_default='zh-CN', nullable=False),
    sa.Column('quiet_start', sa.SmallInteger(), nullable=True),
    sa.Column('quiet_end', sa.SmallInteger(), nullable=True),
    sa.Column('department_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_subscribers_department_id')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscribers')),
    sa.UniqueConstraint('email', name=op.f('uq_subscribers_email')),
    sa.UniqueConstraint('phone', name=op.f('uq_subscribers_phone')),
    sa.UniqueConstraint('uscc', name=op.f('uq_subscribers_uscc'))
    )

    op.create_table('consents',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('subscriber_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('scope', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('source', sa.String(length=80), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_consents_subscriber_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consents'))
    )
    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consents_subscriber_id'), ['subscriber_id'], unique=False)

    op.create_table('deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('policy_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('subscriber_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('attempts', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('provider_ref', sa.String(length=100), nullable=True),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('sent_at', sa.DateTime(), nullable=True),
    sa.Column('delivered_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['policy_id'], ['policies.id'], name=op.f('fk_deliveries_policy_id')),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_deliveries_subscriber_id')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deliveries')),
    sa.UniqueConstraint('policy_id', 'subscriber_id', 'channel', name=op.f('uq_deliveries_policy_id_subscriber_id_channel'))
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deliveries_policy_id_channel_status'), ['policy_id', 'channel', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_deliveries_provider_ref'), ['provider_ref'], unique=False)
        batch_op.create_index(batch_op.f('ix_deliveries_status_updated_at'), ['status', 'updated_at'], unique=False)

    op.create_table('subscriber_audiences',
    sa.Column('subscriber_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('audience', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_subscriber_audiences_subscriber_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('subscriber_id', 'audience', name=op.f('pk_subscriber_audiences'))
    )
    with op.batch_alter_table('subscriber_audiences', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscriber_audiences_audience_subscriber_id'), ['audience', 'subscriber_id'], unique=False)

    op.create_table('subscriber_attributes',
    sa.Column('subscriber_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('audience', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=600), nullable=False),
    sa.Column('num', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['subscriber_id', 'audience'], ['subscriber_audiences.subscriber_id', 'subscriber_audiences.audience'], name=op.f('fk_subscriber_attributes_subscriber_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('subscriber_id', 'audience', 'name', name=op.f('pk_subscriber_attributes'))
    )
    with op.batch_alter_table('subscriber_attributes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscriber_attributes_audience_name_value_subscriber_id'), ['audience', 'name', 'value', 'subscriber_id'], unique=False)

    op.create_table('subscriber_channels',
    sa.Column('subscriber_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_subscriber_channels_subscriber_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('subscriber_id', 'channel', name=op.f('pk_subscriber_channels'))
    )
    with op.batch_alter_table('subscriber_channels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscriber_channels_channel_subscriber_id'), ['channel', 'subscriber_id'], unique=False)

    op.create_table('subscriber_domains',
    sa.Column('subscriber_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('domain', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_subscriber_domains_subscriber_id'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('subscriber_id', 'domain', name=op.f('pk_subscriber_domains'))
    )
    with op.batch_alter_table('subscriber_domains', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscriber_domains_domain_subscriber_id'), ['domain', 'subscriber_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('subscriber_domains', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscriber_domains_domain_subscriber_id'))

    op.drop_table('subscriber_domains')
    with op.batch_alter_table('subscriber_channels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscriber_channels_channel_subscriber_id'))

    op.drop_table('subscriber_channels')
    with op.batch_alter_table('subscriber_attributes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscriber_attributes_audience_name_value_subscriber_id'))

    op.drop_table('subscriber_attributes')
    with op.batch_alter_table('subscriber_audiences', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscriber_audiences_audience_subscriber_id'))

    op.drop_table('subscriber_audiences')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deliveries_status_updated_at'))
        batch_op.drop_index(batch_op.f('ix_deliveries_provider_ref'))
        batch_op.drop_index(batch_op.f('ix_deliveries_policy_id_channel_status'))

    op.drop_table('deliveries')
    with op.batch_alter_table('consents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consents_subscriber_id'))

    op.drop_table('consents')
    op.drop_table('subscribers')
    with op.batch_alter_table('policies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_policies_status_publish_at'))
        batch_op.drop_index(batch_op.f('ix_policies_department_id_id'))

    op.drop_table('policies')
    op.drop_table('idempotency_keys')
    op.drop_table('departments')

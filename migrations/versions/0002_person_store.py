"""Person store and key store: source records, encrypted field groups, blind indexes, DEKs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 13:53:51.387222
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('data_keys',
    sa.Column('owner_id', sa.Uuid(), nullable=False),
    sa.Column('kek_id', sa.String(length=64), nullable=False),
    sa.Column('wrapped', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('rewrapped_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('owner_id', name=op.f('pk_data_keys'))
    )
    op.create_index(op.f('ix_data_keys_kek_id'), 'data_keys', ['kek_id'], unique=False)
    op.create_table('key_encryption_keys',
    sa.Column('kek_id', sa.String(length=64), nullable=False),
    sa.Column('first_used_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('kek_id', name=op.f('pk_key_encryption_keys'))
    )
    op.create_table('persons',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_persons'))
    )
    op.create_table('source_records',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('feed', sa.String(length=64), nullable=False),
    sa.Column('source_agency', sa.String(length=64), nullable=False),
    sa.Column('source_key', sa.LargeBinary(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('is_current', sa.Boolean(), nullable=False),
    sa.Column('person_id', sa.Uuid(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['person_id'], ['persons.id'], name=op.f('fk_source_records_person_id_persons'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_source_records'))
    )
    op.create_index(op.f('ix_source_records_person_id'), 'source_records', ['person_id'], unique=False)
    op.create_index(op.f('ix_source_records_source_agency'), 'source_records', ['source_agency'], unique=False)
    op.create_index('uq_source_records_current_source_key', 'source_records', ['feed', 'source_key'], unique=True, postgresql_where=sa.text('is_current'))
    op.create_table('blind_index',
    sa.Column('index_id', sa.SmallInteger(), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.Column('record_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['record_id'], ['source_records.id'], name=op.f('fk_blind_index_record_id_source_records'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('index_id', 'value', 'record_id', name=op.f('pk_blind_index'))
    )
    op.create_index(op.f('ix_blind_index_record_id'), 'blind_index', ['record_id'], unique=False)
    op.create_table('record_field_groups',
    sa.Column('record_id', sa.Uuid(), nullable=False),
    sa.Column('group_name', sa.String(length=64), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['record_id'], ['source_records.id'], name=op.f('fk_record_field_groups_record_id_source_records'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('record_id', 'group_name', name=op.f('pk_record_field_groups'))
    )


def downgrade() -> None:
    op.drop_table('record_field_groups')
    op.drop_index(op.f('ix_blind_index_record_id'), table_name='blind_index')
    op.drop_table('blind_index')
    op.drop_index('uq_source_records_current_source_key', table_name='source_records', postgresql_where=sa.text('is_current'))
    op.drop_index(op.f('ix_source_records_source_agency'), table_name='source_records')
    op.drop_index(op.f('ix_source_records_person_id'), table_name='source_records')
    op.drop_table('source_records')
    op.drop_table('persons')
    op.drop_table('key_encryption_keys')
    op.drop_index(op.f('ix_data_keys_kek_id'), table_name='data_keys')
    op.drop_table('data_keys')

"""Builds a Tryton database that Nexo's Tryton connector can sync against.

Run by `nexo_sandbox::tryton` with the venv's Python (see xtask's
`tryton::setup`), never by hand in production:

    python tryton_setup.py --database nexo --password-file pass --out ids.json

with TRYTOND_DATABASE__URI=sqlite:// and TRYTOND_DATABASE__PATH=<folder>.
It activates the modules (party, product, sale, account_invoice and their
dependencies) with `trytond-admin`, then, through proteus in the same
process: currencies EUR/USD/GBP with rates, a company (EUR), the minimal
English chart of accounts, fiscal years with monthly periods and invoice
sequences, customer taxes of 20 %, 5 % and 0 % rounded per line, a product
account category and a payment term. It writes the ids the connector's config needs to
`--out` as JSON. The result is a template: the launcher copies the SQLite
file for every server it starts.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
from decimal import Decimal

MODULES = ['party', 'product', 'sale', 'account_invoice']
CURRENCIES = [
    # code, name, symbol, rate against the company currency (EUR)
    ('EUR', 'Euro', '€', Decimal('1')),
    ('USD', 'US Dollar', '$', Decimal('1.08')),
    ('GBP', 'Pound Sterling', '£', Decimal('0.85')),
    ]
TAX_RATES = ['20', '5', '0']


def activate(database, password_file):
    path = os.environ['TRYTOND_DATABASE__PATH']
    db_file = os.path.join(path, database + '.sqlite')
    # trytond's SQLite backend opens an existing file only.
    open(db_file, 'a').close()
    admin = os.path.join(os.path.dirname(sys.executable), 'trytond-admin')
    env = dict(os.environ, TRYTONPASSFILE=password_file)
    subprocess.run(
        [admin, '-d', database, '-u', *MODULES, '--activate-dependencies',
            '--email', 'admin@nexo.invalid'],
        env=env, check=True, stdin=subprocess.DEVNULL)


def configure(database, today):
    from proteus import Model, Wizard
    from proteus import config as pconfig

    config = pconfig.set_trytond(database)

    Currency = Model.get('currency.currency')
    currencies = {}
    for code, name, symbol, rate in CURRENCIES:
        currency = Currency(
            name=name, code=code, symbol=symbol, rounding=Decimal('0.01'),
            digits=2)
        currency.rates.new(date=datetime.date(2000, 1, 1), rate=rate)
        currency.save()
        currencies[code] = currency

    Party = Model.get('party.party')
    company_party = Party(name='Nexo Demo Ltd')
    company_party.save()
    company_config = Wizard('company.company.config')
    company_config.execute('company')
    company = company_config.form
    company.party = company_party
    company.currency = currencies['EUR']
    company_config.execute('add')
    User = Model.get('res.user')
    config._context = User.get_preferences(True, {})
    Company = Model.get('company.company')
    company, = Company.find()

    ModelData = Model.get('ir.model.data')
    AccountTemplate = Model.get('account.account.template')
    Account = Model.get('account.account')
    chart = Wizard('account.create_chart')
    chart.execute('account')
    chart.form.account_template = AccountTemplate(ModelData.get_id(
            'account.account_template_root_en', config.context))
    chart.form.company = company
    chart.execute('create_account')

    def account(kind):
        found, = Account.find([
                ('type.%s' % kind, '=', True),
                ('company', '=', company.id),
                ('closed', '!=', True),
                ], limit=1)
        return found
    receivable, payable = account('receivable'), account('payable')
    revenue, expense = account('revenue'), account('expense')
    chart.form.account_receivable = receivable
    chart.form.account_payable = payable
    chart.form.category_account_revenue = revenue
    chart.form.category_account_expense = expense
    chart.execute('create_properties')

    FiscalYear = Model.get('account.fiscalyear')
    Sequence = Model.get('ir.sequence.strict')
    SequenceType = Model.get('ir.sequence.type')
    move_type, = SequenceType.find([('name', '=', "Account Move")], limit=1)
    invoice_type, = SequenceType.find([('name', '=', "Invoice")], limit=1)
    for year in range(today.year - 2, today.year + 3):
        fiscalyear = FiscalYear(
            name=str(year), company=company,
            start_date=datetime.date(year, 1, 1),
            end_date=datetime.date(year, 12, 31))
        fiscalyear.move_sequence = Sequence(
            name='Moves %s' % year, sequence_type=move_type,
            company=company)
        fiscalyear.move_sequence.save()
        invoice_sequence = Sequence(
            name='Invoices %s' % year, sequence_type=invoice_type,
            company=company, prefix='INV/%s/' % year, padding=4)
        invoice_sequence.save()
        seq, = fiscalyear.invoice_sequences
        seq.out_invoice_sequence = invoice_sequence
        seq.in_invoice_sequence = invoice_sequence
        seq.out_credit_note_sequence = invoice_sequence
        seq.in_credit_note_sequence = invoice_sequence
        fiscalyear.save()
        FiscalYear.create_period([fiscalyear.id], config.context)

    Tax = Model.get('account.tax')
    tax_account, = Account.find([
            ('company', '=', company.id),
            ('code', '=', '6.3.6'),
            ], limit=1)
    taxes = {}
    for rate in TAX_RATES:
        tax = Tax(
            name='VAT %s%%' % rate, description='VAT %s%%' % rate,
            type='percentage', rate=Decimal(rate) / 100,
            invoice_account=tax_account, credit_note_account=tax_account)
        tax.save()
        taxes[rate] = tax.id

    Category = Model.get('product.category')
    category = Category(name='Sales', accounting=True)
    category.account_revenue = revenue
    category.account_expense = expense
    category.customer_taxes.append(Tax(taxes['20']))
    category.save()

    # Nexo's canonical invoices round tax per line.
    AccountConfiguration = Model.get('account.configuration')
    account_config = AccountConfiguration(1)
    account_config.tax_rounding = 'line'
    # Invoices in USD or GBP post exchange differences here.
    account_config.currency_exchange_debit_account = expense
    account_config.currency_exchange_credit_account = revenue
    account_config.save()

    PaymentTerm = Model.get('account.invoice.payment_term')
    term = PaymentTerm(name='Direct')
    term.lines.new(type='remainder')
    term.save()

    Uom = Model.get('product.uom')
    unit = Uom(ModelData.get_id('product.uom_unit', config.context))

    return {
        'company': company.id,
        'currency': currencies['EUR'].id,
        'currencies': {code: c.id for code, c in currencies.items()},
        'receivable_account': receivable.id,
        'revenue_account': revenue.id,
        'taxes': taxes,
        'account_category': category.id,
        'payment_term': term.id,
        'unit': unit.id,
        'fiscal_years': [today.year - 2, today.year + 2],
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--database', required=True)
    parser.add_argument('--password-file', required=True)
    parser.add_argument('--out', required=True)
    args = parser.parse_args()
    activate(args.database, args.password_file)
    ids = configure(args.database, datetime.date.today())
    with open(args.out, 'w') as out:
        json.dump(ids, out, indent=2)


if __name__ == '__main__':
    main()

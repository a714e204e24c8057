"""`polysec demo`: a seeded, deterministic demo exchange fed through the ingest path.

Everything is drawn from one ``random.Random(seed)`` in a fixed order, so the same seed,
size, period and anchor give the same logical data (ciphertexts and row UUIDs differ:
nonces and keys are random, as they must be). The records are the JSON Lines objects of
docs/ingest.md and go through `Ingestor` exactly like the platform's feed, so the demo
also exercises the validation and the batched writes.

The reference data below (cities, ISPs, carriers, hosting providers) is small and
hand-made: real city coordinates, the providers' real AS numbers and address blocks that
approximate their announced space. It is good enough to look like an exchange's traffic,
not to geolocate anything.

Attack scenarios are injected into the last days before the anchor and recorded as
ground truth in ``demo_scenarios`` / ``demo_scenario_events`` so that detection can be
measured against them.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import random
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from polysec_tui.config import Settings, default_db_url
from polysec_tui.crypto import totp
from polysec_tui.crypto.keyring import Keyring, write_new_keyring
from polysec_tui.db import migrate
from polysec_tui.db.engine import check_connection, make_engine, redact
from polysec_tui.db.models import (
    Account,
    Balance,
    DatabaseInfo,
    DemoScenario,
    DemoScenarioEvent,
    LoginEvent,
    Officer,
    SecurityEvent,
    TotpEnrolment,
    Withdrawal,
)
from polysec_tui.errors import InputError, RefusedError
from polysec_tui.services.feed.ingest import Ingestor
from polysec_tui.services.logins import anomalies
from polysec_tui.services.officers import registry as officers
from polysec_tui.services.officers import sessions
from polysec_tui.services.officers.auth import Actor
from polysec_tui.services.runtime import Runtime, open_runtime
from polysec_tui.services.withdrawals import screening
from polysec_tui.services.withdrawals.screening import ScreenReport

Record = dict[str, Any]
Timed = tuple[datetime, str, Record]  # (time, external id, record): sortable, total order

DAY = timedelta(days=1)
# The exchange's servers (round-trip times grow with the distance from them).
EXCHANGE_LAT, EXCHANGE_LON = 50.11, 8.68

# ============================================================================ reference data


@dataclass(frozen=True)
class City:
    name: str
    region: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Network:
    asn: int
    org: str
    v4: tuple[tuple[int, int], ...]  # (first address, size) per block
    v6: tuple[int, int] | None = None  # (prefix as int, host bits)

    def address(self, rng: random.Random, *, allow_v6: bool = False) -> str:
        if allow_v6 and self.v6 is not None:
            base, bits = self.v6
            return str(ipaddress.IPv6Address(base | rng.getrandbits(min(bits, 64))))
        first, size = rng.choice(self.v4)
        value = first + rng.randrange(size)
        if value & 0xFF in (0, 255):  # no network or broadcast-looking host
            value ^= 1
        return str(ipaddress.IPv4Address(value))


def _net(asn: int, org: str, blocks: str, v6: str | None = None) -> Network:
    v4 = []
    for block in blocks.split():
        network = ipaddress.IPv4Network(block)
        v4.append((int(network.network_address), network.num_addresses))
    six = None
    if v6:
        net6 = ipaddress.IPv6Network(v6)
        six = (int(net6.network_address), 128 - net6.prefixlen)
    return Network(asn, org, tuple(v4), six)


@dataclass(frozen=True)
class Country:
    code: str
    weight: float
    utc_offset: float
    continent: str
    phone: str  # '#' any digit, 'N' 2-9, 'L' an upper-case letter
    postcode: str
    address: str  # {n} {street} {zip} {city} {region}
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    streets: tuple[str, ...]
    cities: tuple[City, ...]
    isps: tuple[Network, ...]
    mobile: Network
    domains: tuple[str, ...]
    ios_share: float = 0.3
    family_first: bool = False


def _country(code: str, weight: float, tz: float, continent: str, phone: str, postcode: str,
             address: str, first: str, last: str, streets: str,
             cities: Sequence[tuple[str, str, float, float]], isps: Sequence[Network],
             mobile: Network, domains: str, *, ios: float = 0.3,
             family_first: bool = False) -> Country:
    def split(text: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in text.split("|"))

    return Country(
        code, weight, tz, continent, phone, postcode, address, split(first), split(last),
        split(streets), tuple(City(*c) for c in cities), tuple(isps), mobile, split(domains),
        ios, family_first,
    )


COUNTRIES: tuple[Country, ...] = (
    _country(
        "US", 12, -5, "NA", "+1 N##-N##-####", "#####", "{n} {street}, {city}, {region} {zip}",
        "James|Mary|Michael|Jennifer|David|Jessica|Christopher|Ashley|Daniel|Emily",
        "Smith|Johnson|Williams|Brown|Jones|Garcia|Miller|Davis|Rodriguez|Wilson",
        "Oak Street|Maple Avenue|Washington Blvd|Park Lane|Cedar Drive|Main Street",
        [("New York", "New York", 40.7128, -74.0060),
         ("Los Angeles", "California", 34.0522, -118.2437),
         ("Chicago", "Illinois", 41.8781, -87.6298), ("Houston", "Texas", 29.7604, -95.3698),
         ("Miami", "Florida", 25.7617, -80.1918), ("Seattle", "Washington", 47.6062, -122.3321),
         ("Austin", "Texas", 30.2672, -97.7431)],
        [_net(7922, "Comcast Cable", "73.0.0.0/10 24.0.0.0/12"),
         _net(7018, "AT&T Services", "99.0.0.0/11 107.192.0.0/12"),
         _net(701, "Verizon Business", "71.160.0.0/12 108.0.0.0/13"),
         _net(20115, "Charter Communications", "24.176.0.0/12 97.80.0.0/13")],
        _net(21928, "T-Mobile USA", "172.56.0.0/14", "2607:fb90::/32"),
        "gmail.com|yahoo.com|outlook.com|icloud.com|aol.com|comcast.net", ios=0.55,
    ),
    _country(
        "GB", 7, 0, "EU", "+44 7### ######", "LN# #LL", "{n} {street}, {city} {zip}",
        "Oliver|Amelia|Harry|Olivia|George|Isla|Jack|Emily|Noah|Ava",
        "Smith|Jones|Taylor|Brown|Williams|Wilson|Evans|Thomas|Roberts|Walker",
        "High Street|Station Road|Church Lane|Victoria Road|Queens Road|Mill Lane",
        [("London", "England", 51.5074, -0.1278), ("Manchester", "England", 53.4808, -2.2426),
         ("Birmingham", "England", 52.4862, -1.8904), ("Edinburgh", "Scotland", 55.9533, -3.1883),
         ("Bristol", "England", 51.4545, -2.5879)],
        [_net(2856, "British Telecommunications", "86.128.0.0/10 81.128.0.0/12"),
         _net(5089, "Virgin Media", "82.0.0.0/13 86.0.0.0/13"),
         _net(5607, "Sky UK", "2.24.0.0/13 90.192.0.0/11")],
        _net(25135, "Vodafone UK", "148.252.0.0/16 85.255.224.0/19"),
        "gmail.com|hotmail.co.uk|outlook.com|btinternet.com|yahoo.co.uk|icloud.com", ios=0.5,
    ),
    _country(
        "DE", 7, 1, "EU", "+49 15# #######", "#####", "{street} {n}, {zip} {city}",
        "Lukas|Anna|Leon|Marie|Jonas|Sophie|Maximilian|Laura|Felix|Lena",
        "Müller|Schmidt|Schneider|Fischer|Weber|Meyer|Wagner|Becker|Hoffmann|Schäfer",
        "Hauptstraße|Bahnhofstraße|Gartenstraße|Schillerstraße|Lindenweg|Goethestraße",
        [("Berlin", "Berlin", 52.5200, 13.4050), ("München", "Bayern", 48.1351, 11.5820),
         ("Hamburg", "Hamburg", 53.5511, 9.9937), ("Köln", "Nordrhein-Westfalen", 50.9375, 6.9603),
         ("Frankfurt am Main", "Hessen", 50.1109, 8.6821)],
        [_net(3320, "Deutsche Telekom", "79.192.0.0/10 84.128.0.0/10"),
         _net(3209, "Vodafone GmbH", "88.64.0.0/12 188.96.0.0/12"),
         _net(6805, "Telefonica Germany", "89.12.0.0/14 95.112.0.0/12")],
        _net(3320, "Deutsche Telekom", "80.187.0.0/16", "2a01:598::/32"),
        "gmail.com|web.de|gmx.de|t-online.de|outlook.de|posteo.de", ios=0.35,
    ),
    _country(
        "FR", 5, 1, "EU", "+33 6 ## ## ## ##", "#####", "{n} {street}, {zip} {city}",
        "Gabriel|Louise|Léo|Jade|Raphaël|Emma|Hugo|Chloé|Arthur|Inès",
        "Martin|Bernard|Dubois|Thomas|Robert|Richard|Petit|Durand|Lefèvre|Moreau",
        "rue de la République|avenue Jean Jaurès|rue Victor Hugo|boulevard Voltaire|rue Pasteur",
        [("Paris", "Île-de-France", 48.8566, 2.3522),
         ("Lyon", "Auvergne-Rhône-Alpes", 45.7640, 4.8357),
         ("Marseille", "Provence-Alpes-Côte d'Azur", 43.2965, 5.3698),
         ("Toulouse", "Occitanie", 43.6047, 1.4442), ("Lille", "Hauts-de-France", 50.6292, 3.0573)],
        [_net(3215, "Orange S.A.", "90.0.0.0/10 86.192.0.0/11"),
         _net(12322, "Free SAS", "88.160.0.0/11 82.64.0.0/14"),
         _net(15557, "SFR", "93.0.0.0/13 109.0.0.0/13")],
        _net(51207, "Free Mobile", "37.160.0.0/12"),
        "gmail.com|orange.fr|free.fr|hotmail.fr|laposte.net|yahoo.fr", ios=0.35,
    ),
    _country(
        "NL", 3, 1, "EU", "+31 6 ########", "#### LL", "{street} {n}, {zip} {city}",
        "Daan|Emma|Sem|Julia|Lucas|Mila|Finn|Tess|Levi|Sara",
        "de Jong|Jansen|de Vries|van den Berg|Bakker|Visser|Smit|Meijer|de Boer|Mulder",
        "Kerkstraat|Dorpsstraat|Molenweg|Stationsweg|Prinsengracht",
        [("Amsterdam", "Noord-Holland", 52.3676, 4.9041),
         ("Rotterdam", "Zuid-Holland", 51.9244, 4.4777),
         ("Utrecht", "Utrecht", 52.0907, 5.1214), ("Eindhoven", "Noord-Brabant", 51.4416, 5.4697)],
        [_net(1136, "KPN B.V.", "77.160.0.0/12 145.128.0.0/12"),
         _net(33915, "Vodafone Libertel (Ziggo)", "84.24.0.0/13 62.194.0.0/15")],
        _net(31615, "T-Mobile Netherlands", "62.140.128.0/17 31.20.0.0/15"),
        "gmail.com|hotmail.nl|ziggo.nl|kpnmail.nl|outlook.com", ios=0.45,
    ),
    _country(
        "ES", 4, 1, "EU", "+34 6## ### ###", "#####", "{street}, {n}, {zip} {city}",
        "Hugo|Lucía|Martín|Sofía|Pablo|María|Alejandro|Paula|Daniel|Carmen",
        "García|Fernández|González|Rodríguez|López|Martínez|Sánchez|Pérez|Gómez|Ruiz",
        "Calle Mayor|Calle Real|Avenida de la Constitución|Calle del Sol|Gran Vía",
        [("Madrid", "Comunidad de Madrid", 40.4168, -3.7038),
         ("Barcelona", "Cataluña", 41.3874, 2.1686),
         ("Valencia", "Comunidad Valenciana", 39.4699, -0.3763),
         ("Sevilla", "Andalucía", 37.3891, -5.9845)],
        [_net(3352, "Telefonica de Espana", "83.32.0.0/11 88.0.0.0/12"),
         _net(12479, "Orange Espagne", "90.160.0.0/11 81.32.0.0/12"),
         _net(12430, "Vodafone Spain", "85.84.0.0/14 95.16.0.0/12")],
        _net(12430, "Vodafone Spain", "37.132.0.0/14"),
        "gmail.com|hotmail.es|yahoo.es|telefonica.net|outlook.es",
    ),
    _country(
        "IT", 4, 1, "EU", "+39 3## ### ####", "#####", "{street} {n}, {zip} {city}",
        "Leonardo|Sofia|Francesco|Giulia|Alessandro|Aurora|Lorenzo|Ginevra|Matteo|Chiara",
        "Rossi|Russo|Ferrari|Esposito|Bianchi|Romano|Colombo|Ricci|Marino|Greco",
        "Via Roma|Via Garibaldi|Corso Italia|Via Mazzini|Via Dante|Via Verdi",
        [("Roma", "Lazio", 41.9028, 12.4964), ("Milano", "Lombardia", 45.4642, 9.1900),
         ("Napoli", "Campania", 40.8518, 14.2681), ("Torino", "Piemonte", 45.0703, 7.6869),
         ("Bologna", "Emilia-Romagna", 44.4949, 11.3426)],
        [_net(3269, "Telecom Italia", "79.0.0.0/11 87.0.0.0/12"),
         _net(12874, "Fastweb", "93.32.0.0/12 2.224.0.0/12"),
         _net(30722, "Vodafone Italia", "2.32.0.0/12 5.168.0.0/14")],
        _net(1267, "Wind Tre", "151.18.0.0/15 151.40.0.0/13"),
        "gmail.com|libero.it|hotmail.it|virgilio.it|tiscali.it",
    ),
    _country(
        "PL", 3, 1, "EU", "+48 5## ### ###", "##-###", "ul. {street} {n}, {zip} {city}",
        "Jakub|Zuzanna|Antoni|Julia|Jan|Zofia|Łukasz|Maja|Piotr|Agnieszka",
        "Nowak|Kowalski|Wiśniewski|Wójcik|Kowalczyk|Kamiński|Lewandowski|Zieliński|Szymański",
        "Marszałkowska|Długa|Polna|Leśna|Słoneczna|Mickiewicza",
        [("Warszawa", "Mazowieckie", 52.2297, 21.0122), ("Kraków", "Małopolskie", 50.0647, 19.9450),
         ("Wrocław", "Dolnośląskie", 51.1079, 17.0385), ("Gdańsk", "Pomorskie", 54.3520, 18.6466),
         ("Poznań", "Wielkopolskie", 52.4064, 16.9252)],
        [_net(5617, "Orange Polska", "83.0.0.0/11 31.60.0.0/14"),
         _net(6830, "UPC Polska", "89.64.0.0/12"),
         _net(12741, "Netia", "83.238.0.0/15 87.205.0.0/16")],
        _net(12912, "T-Mobile Polska", "46.76.0.0/15 188.146.0.0/15"),
        "gmail.com|wp.pl|onet.pl|o2.pl|interia.pl",
    ),
    _country(
        "SE", 1.5, 1, "EU", "+46 7# ### ## ##", "### ##", "{street} {n}, {zip} {city}",
        "William|Alice|Liam|Maja|Noah|Elsa|Hugo|Astrid|Oscar|Ebba",
        "Andersson|Johansson|Karlsson|Nilsson|Eriksson|Larsson|Olsson|Persson",
        "Storgatan|Drottninggatan|Kungsgatan|Skolgatan|Vasagatan",
        [("Stockholm", "Stockholm", 59.3293, 18.0686),
         ("Göteborg", "Västra Götaland", 57.7089, 11.9746),
         ("Malmö", "Skåne", 55.6050, 13.0038)],
        [_net(3301, "Telia Company", "78.64.0.0/12 81.224.0.0/12"),
         _net(39651, "Com Hem", "90.224.0.0/12 83.248.0.0/13")],
        _net(1257, "Tele2 Sverige", "90.128.0.0/12"),
        "gmail.com|hotmail.se|telia.com|outlook.com", ios=0.5,
    ),
    _country(
        "CH", 1.5, 1, "EU", "+41 7# ### ## ##", "####", "{street} {n}, {zip} {city}",
        "Noah|Mia|Luca|Emma|Leon|Lina|Elias|Lara|Nico|Chiara",
        "Müller|Meier|Schmid|Keller|Weber|Huber|Favre|Rochat|Bernasconi",
        "Bahnhofstrasse|Dorfstrasse|Rue du Lac|Seestrasse|Rue de Lausanne",
        [("Zürich", "Zürich", 47.3769, 8.5417), ("Genève", "Genève", 46.2044, 6.1432),
         ("Basel", "Basel-Stadt", 47.5596, 7.5886), ("Lausanne", "Vaud", 46.5197, 6.6323)],
        [_net(3303, "Swisscom", "85.0.0.0/13 178.192.0.0/13"),
         _net(6730, "Sunrise", "212.254.0.0/16 188.60.0.0/14")],
        _net(3303, "Swisscom", "178.197.0.0/16"),
        "gmail.com|bluewin.ch|gmx.ch|hotmail.ch|protonmail.ch", ios=0.5,
    ),
    _country(
        "TR", 5, 3, "EU", "+90 5## ### ## ##", "#####", "{street} No:{n}, {zip} {city}",
        "Yusuf|Zeynep|Eymen|Elif|Mustafa|Defne|Emir|Ayşe|Mehmet|Fatma",
        "Yılmaz|Kaya|Demir|Şahin|Çelik|Yıldız|Aydın|Öztürk|Arslan|Doğan",  # noqa: RUF001 - Turkish dotless i
        "Atatürk Caddesi|Cumhuriyet Caddesi|İstiklal Caddesi|Gazi Bulvarı|Bağdat Caddesi",  # noqa: RUF001
        [("İstanbul", "İstanbul", 41.0082, 28.9784), ("Ankara", "Ankara", 39.9334, 32.8597),
         ("İzmir", "İzmir", 38.4237, 27.1428), ("Antalya", "Antalya", 36.8969, 30.7133)],
        [_net(9121, "Turk Telekom", "78.160.0.0/11 88.224.0.0/11"),
         _net(34984, "Superonline", "176.232.0.0/13 88.240.0.0/13")],
        _net(16135, "Turkcell", "176.88.0.0/13 31.142.0.0/16"),
        "gmail.com|hotmail.com|yandex.com.tr|outlook.com",
    ),
    _country(
        "UA", 3, 2, "EU", "+380 67 ### ## ##", "#####", "vul. {street}, {n}, {city}, {zip}",
        "Oleksandr|Anastasiia|Dmytro|Yuliia|Andrii|Olena|Maksym|Kateryna|Serhii|Iryna",
        "Melnyk|Shevchenko|Kovalenko|Bondarenko|Boiko|Tkachenko|Kravchenko|Oliinyk",
        "Khreshchatyk|Shevchenka|Franka|Sadova|Hrushevskoho",
        [("Kyiv", "Kyiv City", 50.4501, 30.5234), ("Lviv", "Lviv Oblast", 49.8397, 24.0297),
         ("Odesa", "Odesa Oblast", 46.4825, 30.7233),
         ("Dnipro", "Dnipropetrovsk Oblast", 48.4647, 35.0462)],
        [_net(6849, "Ukrtelecom", "176.36.0.0/14 91.202.0.0/16"),
         _net(25229, "Volia", "93.72.0.0/13 77.120.0.0/14")],
        _net(15895, "Kyivstar", "46.211.0.0/16 46.133.0.0/16"),
        "gmail.com|ukr.net|i.ua|meta.ua",
    ),
    _country(
        "PT", 1.5, 0, "EU", "+351 9## ### ###", "####-###", "{street}, {n}, {zip} {city}",
        "Francisco|Maria|Afonso|Leonor|Tomás|Matilde|Duarte|Beatriz|João|Inês",
        "Silva|Santos|Ferreira|Pereira|Oliveira|Costa|Rodrigues|Martins",
        "Rua Augusta|Avenida da Liberdade|Rua de Santa Catarina|Rua do Carmo",
        [("Lisboa", "Lisboa", 38.7223, -9.1393), ("Porto", "Porto", 41.1579, -8.6291),
         ("Braga", "Braga", 41.5454, -8.4265), ("Faro", "Faro", 37.0194, -7.9322)],
        [_net(3243, "MEO", "85.240.0.0/13 2.80.0.0/14"),
         _net(2860, "NOS Comunicacoes", "89.152.0.0/14 85.138.0.0/15")],
        _net(12353, "Vodafone Portugal", "94.60.0.0/14 148.69.0.0/16"),
        "gmail.com|sapo.pt|hotmail.com|outlook.pt",
    ),
    _country(
        "BR", 6, -3, "SA", "+55 N# 9####-####", "#####-###", "{street}, {n} - {city}, {zip}",
        "Miguel|Helena|Arthur|Alice|Heitor|Laura|Gael|Valentina|Lucas|Júlia",
        "Silva|Santos|Oliveira|Souza|Rodrigues|Ferreira|Alves|Pereira|Lima|Gomes",
        "Rua das Flores|Avenida Paulista|Rua XV de Novembro|Rua São João|Avenida Brasil",
        [("São Paulo", "São Paulo", -23.5505, -46.6333),
         ("Rio de Janeiro", "Rio de Janeiro", -22.9068, -43.1729),
         ("Belo Horizonte", "Minas Gerais", -19.9167, -43.9345),
         ("Brasília", "Distrito Federal", -15.7939, -47.8828),
         ("Porto Alegre", "Rio Grande do Sul", -30.0346, -51.2177),
         ("Recife", "Pernambuco", -8.0476, -34.8770)],
        [_net(28573, "Claro NXT", "177.32.0.0/12 189.0.0.0/12"),
         _net(26599, "Telefonica Brasil (Vivo)", "177.64.0.0/12 187.0.0.0/12"),
         _net(18881, "Telefonica Brasil", "179.96.0.0/12")],
        _net(26615, "TIM Brasil", "191.128.0.0/12", "2804:18::/32"),
        "gmail.com|hotmail.com|yahoo.com.br|uol.com.br|bol.com.br|outlook.com",
    ),
    _country(
        "AR", 3, -3, "SA", "+54 9 11 ####-####", "L####LLL", "{street} {n}, {zip} {city}",
        "Mateo|Emma|Benjamín|Isabella|Santino|Martina|Thiago|Catalina|Juan|Sofía",
        "González|Rodríguez|Gómez|Fernández|López|Díaz|Martínez|Pérez|Romero",
        "Avenida Corrientes|Calle Florida|Avenida Santa Fe|San Martín|Avenida Rivadavia",
        [("Buenos Aires", "Ciudad Autónoma de Buenos Aires", -34.6037, -58.3816),
         ("Córdoba", "Córdoba", -31.4201, -64.1888), ("Rosario", "Santa Fe", -32.9442, -60.6505),
         ("Mendoza", "Mendoza", -32.8895, -68.8458)],
        [_net(7303, "Telecom Argentina", "181.0.0.0/12 190.16.0.0/13"),
         _net(22927, "Telefonica de Argentina", "186.128.0.0/12")],
        _net(27747, "Telecentro", "181.44.0.0/14"),
        "gmail.com|hotmail.com|yahoo.com.ar|outlook.com",
    ),
    _country(
        "MX", 3, -6, "NA", "+52 ## #### ####", "#####", "{street} {n}, Col. Centro, {zip} {city}",
        "Santiago|Sofía|Mateo|Regina|Sebastián|Valentina|Leonardo|Camila|Diego|Ximena",
        "Hernández|García|Martínez|López|González|Pérez|Rodríguez|Sánchez|Ramírez",
        "Avenida Reforma|Calle Juárez|Avenida Insurgentes|Calle Hidalgo|Calle Morelos",
        [("Ciudad de México", "Ciudad de México", 19.4326, -99.1332),
         ("Guadalajara", "Jalisco", 20.6597, -103.3496),
         ("Monterrey", "Nuevo León", 25.6866, -100.3161), ("Puebla", "Puebla", 19.0414, -98.2063),
         ("Tijuana", "Baja California", 32.5149, -117.0382)],
        [_net(8151, "Uninet (Telmex)", "187.128.0.0/11 189.128.0.0/11"),
         _net(22884, "Total Play", "201.144.0.0/12")],
        _net(28403, "Radiomovil Dipsa (Telcel)", "200.68.128.0/17 189.203.0.0/16"),
        "gmail.com|hotmail.com|outlook.com|yahoo.com.mx|prodigy.net.mx",
    ),
    _country(
        "CO", 2, -5, "SA", "+57 3## ### ####", "######", "{street} # {n}, {city}",
        "Samuel|Salomé|Matías|Mariana|Emiliano|Isabella|Jerónimo|Luciana",
        "Rodríguez|Gómez|González|Martínez|García|López|Hernández|Sánchez",
        "Carrera 7|Calle 72|Avenida 68|Calle 10|Carrera 43A",
        [("Bogotá", "Bogotá D.C.", 4.7110, -74.0721), ("Medellín", "Antioquia", 6.2442, -75.5812),
         ("Cali", "Valle del Cauca", 3.4516, -76.5320),
         ("Barranquilla", "Atlántico", 10.9685, -74.7813)],
        [_net(10620, "Telmex Colombia (Claro)", "181.48.0.0/13 186.80.0.0/13"),
         _net(13489, "EPM Telecomunicaciones (Tigo)", "181.128.0.0/12")],
        _net(27831, "Colombia Movil", "191.95.0.0/16"),
        "gmail.com|hotmail.com|outlook.com|yahoo.com",
    ),
    _country(
        "NG", 5, 1, "AF", "+234 80# ### ####", "######", "{n} {street}, {city}",
        "Chinedu|Ngozi|Emeka|Aisha|Oluwaseun|Funmilayo|Ibrahim|Chiamaka|Tunde|Amaka",
        "Okafor|Adeyemi|Bello|Okonkwo|Eze|Ogunleye|Abubakar|Nwosu|Balogun",
        "Allen Avenue|Awolowo Road|Admiralty Way|Herbert Macaulay Way|Ahmadu Bello Way",
        [("Lagos", "Lagos", 6.5244, 3.3792), ("Abuja", "Federal Capital Territory", 9.0765, 7.3986),
         ("Port Harcourt", "Rivers", 4.8156, 7.0498), ("Ibadan", "Oyo", 7.3775, 3.9470),
         ("Kano", "Kano", 12.0022, 8.5920)],
        [_net(37148, "Globacom", "197.210.0.0/15"),
         _net(37282, "MainOne", "41.58.0.0/16 105.112.0.0/13")],
        _net(29465, "MTN Nigeria", "102.88.0.0/15 102.90.0.0/16"),
        "gmail.com|yahoo.com|outlook.com",
    ),
    _country(
        "ZA", 2, 2, "AF", "+27 8# ### ####", "####", "{n} {street}, {city}, {zip}",
        "Thabo|Lerato|Sipho|Nomvula|Johan|Anika|Themba|Zanele",
        "Nkosi|Dlamini|Botha|van der Merwe|Khumalo|Naidoo|Mokoena|Pretorius",
        "Jan Smuts Avenue|Long Street|Main Road|Church Street|Oxford Road",
        [("Johannesburg", "Gauteng", -26.2041, 28.0473),
         ("Cape Town", "Western Cape", -33.9249, 18.4241),
         ("Durban", "KwaZulu-Natal", -29.8587, 31.0218),
         ("Pretoria", "Gauteng", -25.7479, 28.2293)],
        [_net(37457, "Telkom SA", "105.224.0.0/12 41.144.0.0/12"),
         _net(37611, "Afrihost", "102.132.0.0/16")],
        _net(29975, "Vodacom", "41.0.0.0/13"),
        "gmail.com|outlook.com|mweb.co.za|yahoo.com",
    ),
    _country(
        "KE", 1.5, 3, "AF", "+254 7## ### ###", "#####", "{street}, {city} {zip}",
        "Brian|Faith|Kevin|Mercy|Dennis|Wanjiru|Collins|Achieng",
        "Otieno|Kamau|Wanjiku|Mwangi|Ochieng|Njoroge|Kiprop|Mutua",
        "Kenyatta Avenue|Moi Avenue|Ngong Road|Waiyaki Way",
        [("Nairobi", "Nairobi", -1.2921, 36.8219), ("Mombasa", "Mombasa", -4.0435, 39.6682),
         ("Kisumu", "Kisumu", -0.0917, 34.7680)],
        [_net(36866, "Jamii Telecommunications", "41.139.128.0/17 102.68.0.0/14"),
         _net(15399, "Wananchi (Zuku)", "197.237.0.0/16")],
        _net(33771, "Safaricom", "105.160.0.0/12 41.90.0.0/15"),
        "gmail.com|yahoo.com|outlook.com",
    ),
    _country(
        "IN", 6, 5.5, "AS", "+91 9#### #####", "######", "{n}, {street}, {city} {zip}",
        "Aarav|Aadhya|Vihaan|Ananya|Arjun|Diya|Rohan|Priya|Rahul|Sneha",
        "Sharma|Patel|Singh|Kumar|Reddy|Iyer|Gupta|Nair|Das|Mehta",
        "MG Road|Station Road|Nehru Nagar|Gandhi Marg|Linking Road|Park Street",
        [("Mumbai", "Maharashtra", 19.0760, 72.8777), ("Delhi", "Delhi", 28.7041, 77.1025),
         ("Bengaluru", "Karnataka", 12.9716, 77.5946), ("Hyderabad", "Telangana", 17.3850, 78.4867),
         ("Chennai", "Tamil Nadu", 13.0827, 80.2707), ("Kolkata", "West Bengal", 22.5726, 88.3639),
         ("Pune", "Maharashtra", 18.5204, 73.8567)],
        [_net(24560, "Bharti Airtel", "122.160.0.0/12 106.192.0.0/11"),
         _net(9829, "BSNL", "117.192.0.0/11 59.88.0.0/13"),
         _net(18209, "Atria Convergence (ACT)", "49.204.0.0/14 106.51.0.0/16")],
        _net(55836, "Reliance Jio", "49.32.0.0/12 157.32.0.0/12", "2409:4000::/22"),
        "gmail.com|yahoo.co.in|rediffmail.com|outlook.com",
    ),
    _country(
        "ID", 3, 7, "AS", "+62 81# #### ####", "#####", "Jl. {street} No. {n}, {city} {zip}",
        "Muhammad|Siti|Budi|Putri|Agus|Dewi|Rizky|Ayu|Andi|Nur",
        "Santoso|Wijaya|Saputra|Hidayat|Pratama|Kusuma|Lestari|Nugroho|Setiawan",
        "Sudirman|Thamrin|Gatot Subroto|Diponegoro|Ahmad Yani",
        [("Jakarta", "DKI Jakarta", -6.2088, 106.8456),
         ("Surabaya", "Jawa Timur", -7.2575, 112.7521),
         ("Bandung", "Jawa Barat", -6.9175, 107.6191), ("Medan", "Sumatera Utara", 3.5952, 98.6722),
         ("Denpasar", "Bali", -8.6705, 115.2126)],
        [_net(7713, "Telkom Indonesia", "36.64.0.0/11 180.240.0.0/13"),
         _net(23700, "Link Net (First Media)", "139.192.0.0/14"),
         _net(17451, "Biznet Networks", "182.253.0.0/16 114.4.0.0/15")],
        _net(23693, "Telkomsel", "114.120.0.0/13 182.0.0.0/13"),
        "gmail.com|yahoo.co.id|outlook.com",
    ),
    _country(
        "PH", 3, 8, "AS", "+63 9## ### ####", "####", "{n} {street}, {city}, {zip}",
        "Nathaniel|Althea|Jacob|Princess|Joshua|Angel|Christian|Nicole",
        "Santos|Reyes|Cruz|Bautista|Garcia|Mendoza|Torres|Villanueva|Ramos",
        "Rizal Avenue|Ayala Avenue|Mabini Street|Bonifacio Street|Katipunan Avenue",
        [("Manila", "Metro Manila", 14.5995, 120.9842),
         ("Quezon City", "Metro Manila", 14.6760, 121.0437),
         ("Cebu City", "Central Visayas", 10.3157, 123.8854),
         ("Davao City", "Davao Region", 7.1907, 125.4553)],
        [_net(9299, "PLDT", "112.198.0.0/15 49.144.0.0/13"),
         _net(17639, "Converge ICT", "122.2.0.0/16 180.190.0.0/15")],
        _net(132199, "Globe Telecom", "112.200.0.0/13 175.176.0.0/13"),
        "gmail.com|yahoo.com|outlook.com",
    ),
    _country(
        "VN", 4, 7, "AS", "+84 9# ### ## ##", "######", "{n} {street}, {city}",
        "Minh|Linh|Huy|Trang|Đức|Ngọc|Tuấn|Mai|Hùng|Lan",
        "Nguyễn Văn|Trần Thị|Lê Văn|Phạm Thị|Hoàng Văn|Huỳnh Thị|Phan Văn|Vũ Thị",
        "Lê Lợi|Nguyễn Huệ|Trần Hưng Đạo|Hai Bà Trưng|Lý Thường Kiệt",
        [("Hà Nội", "Hà Nội", 21.0285, 105.8542), ("Hồ Chí Minh", "Hồ Chí Minh", 10.8231, 106.6297),
         ("Đà Nẵng", "Đà Nẵng", 16.0544, 108.2022), ("Hải Phòng", "Hải Phòng", 20.8449, 106.6881)],
        [_net(7552, "Viettel Group", "27.64.0.0/12 171.224.0.0/11"),
         _net(45899, "VNPT", "113.160.0.0/11 14.160.0.0/11"),
         _net(18403, "FPT Telecom", "42.112.0.0/13 118.68.0.0/14")],
        _net(7552, "Viettel Group", "116.96.0.0/12"),
        "gmail.com|yahoo.com.vn|outlook.com", family_first=True,
    ),
    _country(
        "TH", 2, 7, "AS", "+66 8# ### ####", "#####", "{n} {street}, {city} {zip}",
        "Somchai|Siriporn|Anan|Nattaya|Kittisak|Ploy|Thanawat|Kanokwan",
        "Saetang|Srisuk|Wongsa|Boonmee|Rattanakorn|Kaewkla|Somboon|Chaiyasit",
        "Sukhumvit Road|Silom Road|Rama IV Road|Ratchadaphisek Road",
        [("Bangkok", "Bangkok", 13.7563, 100.5018), ("Chiang Mai", "Chiang Mai", 18.7883, 98.9853),
         ("Phuket", "Phuket", 7.8804, 98.3923), ("Khon Kaen", "Khon Kaen", 16.4322, 102.8236)],
        [_net(17552, "True Internet", "171.96.0.0/13 58.8.0.0/14"),
         _net(45758, "Triple T Broadband", "180.183.0.0/16 110.168.0.0/14")],
        _net(131445, "Advanced Wireless Network (AIS)", "49.228.0.0/14"),
        "gmail.com|hotmail.com|outlook.co.th",
    ),
    _country(
        "SG", 1.5, 8, "AS", "+65 9### ####", "######", "{n} {street}, Singapore {zip}",
        "Wei Jie|Hui Min|Jun Hao|Xin Yi|Ethan|Chloe|Muhammad|Nur",
        "Tan|Lim|Lee|Ng|Wong|Goh|Chua|Rahman|Koh",
        "Orchard Road|Ang Mo Kio Avenue 3|Tampines Street 21|Jurong West Street 42",
        [("Singapore", "Central", 1.2897, 103.8501), ("Tampines", "East", 1.3496, 103.9568),
         ("Jurong West", "West", 1.3404, 103.7090)],
        [_net(7473, "Singapore Telecommunications", "116.86.0.0/15"),
         _net(4657, "StarHub", "42.60.0.0/14 101.127.0.0/16")],
        _net(4773, "M1 Limited", "118.189.0.0/16 111.65.32.0/19"),
        "gmail.com|hotmail.com|singnet.com.sg|yahoo.com.sg", ios=0.45,
    ),
    _country(
        "JP", 2, 9, "AS", "+81 90-####-####", "###-####", "{n} {street}, {city} {zip}",
        "Haruto|Yui|Sota|Hina|Yuto|Sakura|Riku|Aoi|Ren|Mei",
        "Sato|Suzuki|Takahashi|Tanaka|Watanabe|Ito|Yamamoto|Nakamura|Kobayashi",
        "Shibuya|Umeda|Sakae|Tenjin|Shinjuku",
        [("Tokyo", "Tokyo", 35.6762, 139.6503), ("Osaka", "Osaka", 34.6937, 135.5023),
         ("Yokohama", "Kanagawa", 35.4437, 139.6380), ("Nagoya", "Aichi", 35.1815, 136.9066),
         ("Fukuoka", "Fukuoka", 33.5902, 130.4017)],
        [_net(4713, "NTT Communications (OCN)", "153.128.0.0/11 114.48.0.0/13"),
         _net(17676, "SoftBank", "126.0.0.0/10"),
         _net(2516, "KDDI", "106.128.0.0/11")],
        _net(9605, "NTT Docomo", "1.66.0.0/15 49.96.0.0/12"),
        "gmail.com|yahoo.co.jp|docomo.ne.jp|icloud.com", ios=0.65,
    ),
    _country(
        "KR", 3, 9, "AS", "+82 10-####-####", "#####", "{n} {street}, {city} {zip}",
        "Min-jun|Seo-yeon|Ji-ho|Ha-eun|Do-yun|Ji-woo|Seo-jun|Soo-ah",
        "Kim|Lee|Park|Choi|Jung|Kang|Cho|Yoon|Jang",
        "Teheran-ro|Sejong-daero|Haeundae-ro|Gangnam-daero",
        [("Seoul", "Seoul", 37.5665, 126.9780), ("Busan", "Busan", 35.1796, 129.0756),
         ("Incheon", "Incheon", 37.4563, 126.7052), ("Daegu", "Daegu", 35.8714, 128.6014)],
        [_net(4766, "Korea Telecom", "121.128.0.0/11 175.192.0.0/11"),
         _net(9318, "SK Broadband", "218.232.0.0/13 1.224.0.0/12"),
         _net(3786, "LG Uplus", "106.240.0.0/12")],
        _net(17858, "LG Uplus (mobile)", "117.111.0.0/16"),
        "gmail.com|naver.com|daum.net|kakao.com", ios=0.3,
    ),
    _country(
        "AU", 2.5, 10, "OC", "+61 4## ### ###", "####", "{n} {street}, {city} {zip}",
        "Oliver|Charlotte|Noah|Amelia|Jack|Isla|William|Mia|Lachlan|Chloe",
        "Smith|Jones|Williams|Brown|Wilson|Taylor|Nguyen|Martin|Kelly",
        "George Street|Collins Street|Queen Street|King William Street|Hay Street",
        [("Sydney", "New South Wales", -33.8688, 151.2093),
         ("Melbourne", "Victoria", -37.8136, 144.9631),
         ("Brisbane", "Queensland", -27.4698, 153.0251),
         ("Perth", "Western Australia", -31.9505, 115.8605),
         ("Adelaide", "South Australia", -34.9285, 138.6007)],
        [_net(1221, "Telstra", "1.128.0.0/11 58.160.0.0/12"),
         _net(4804, "Optus", "49.176.0.0/12 211.26.0.0/15"),
         _net(7545, "TPG Telecom", "101.160.0.0/14 124.168.0.0/13")],
        _net(1221, "Telstra", "1.144.0.0/12"),
        "gmail.com|bigpond.com|outlook.com|icloud.com", ios=0.55,
    ),
    _country(
        "CA", 3, -5, "NA", "+1 N##-N##-####", "L#L #L#", "{n} {street}, {city}, {region} {zip}",
        "Liam|Olivia|Noah|Emma|Félix|Charlotte|William|Léa|Ethan|Chloé",
        "Smith|Tremblay|Brown|Martin|Roy|Wilson|Gagnon|Lee|Côté",
        "Yonge Street|Rue Sainte-Catherine|Robson Street|Bank Street|Jasper Avenue",
        [("Toronto", "Ontario", 43.6532, -79.3832), ("Montréal", "Québec", 45.5017, -73.5673),
         ("Vancouver", "British Columbia", 49.2827, -123.1207),
         ("Calgary", "Alberta", 51.0447, -114.0719),
         ("Ottawa", "Ontario", 45.4215, -75.6972)],
        [_net(812, "Rogers Communications", "99.224.0.0/11 174.112.0.0/12"),
         _net(577, "Bell Canada", "70.48.0.0/13 142.112.0.0/12"),
         _net(5769, "Videotron", "24.200.0.0/13")],
        _net(577, "Bell Mobility", "184.151.0.0/16"),
        "gmail.com|hotmail.com|outlook.com|rogers.com|videotron.ca", ios=0.55,
    ),
    _country(
        "AE", 1.5, 4, "AS", "+971 5# ### ####", "", "{n} {street}, {city}",
        "Mohammed|Fatima|Ahmed|Mariam|Omar|Aisha|Khalid|Noura|Rahul|Anna",
        "Al Mansoori|Al Hashimi|Khan|Al Shamsi|Sharma|Al Nuaimi|Haddad|Al Ali",
        "Sheikh Zayed Road|Al Wasl Road|Corniche Road|Jumeirah Beach Road",
        [("Dubai", "Dubai", 25.2048, 55.2708), ("Abu Dhabi", "Abu Dhabi", 24.4539, 54.3773),
         ("Sharjah", "Sharjah", 25.3463, 55.4209)],
        [_net(5384, "Emirates Telecommunications (Etisalat)", "94.200.0.0/13 86.96.0.0/13"),
         _net(15802, "Emirates Integrated Telecom (du)", "2.48.0.0/14 91.72.0.0/14")],
        _net(5384, "Emirates Telecommunications (Etisalat)", "5.192.0.0/13"),
        "gmail.com|hotmail.com|outlook.com|eim.ae", ios=0.55,
    ),
)
COUNTRY_BY_CODE = {c.code: c for c in COUNTRIES}


@dataclass(frozen=True)
class Hosting:
    """A data-centre or VPN network: where attacks come from."""

    network: Network
    country: str
    city: City


HOSTING: tuple[Hosting, ...] = (
    Hosting(_net(14061, "DigitalOcean", "167.99.0.0/16 188.166.0.0/16"), "NL",
            City("Amsterdam", "North Holland", 52.3676, 4.9041)),
    Hosting(_net(16276, "OVH SAS", "51.75.0.0/16 137.74.0.0/16"), "FR",
            City("Roubaix", "Hauts-de-France", 50.6942, 3.1746)),
    Hosting(_net(24940, "Hetzner Online", "88.198.0.0/16 136.243.0.0/16"), "DE",
            City("Falkenstein", "Sachsen", 50.4779, 12.3713)),
    Hosting(_net(9009, "M247 Europe", "89.46.0.0/16 185.236.200.0/22"), "RO",
            City("Bucharest", "Bucuresti", 44.4268, 26.1025)),
    Hosting(_net(20473, "Vultr (Choopa)", "45.32.0.0/16 139.180.128.0/17"), "SG",
            City("Singapore", "Central", 1.2897, 103.8501)),
    Hosting(_net(63949, "Akamai Connected Cloud (Linode)", "172.104.0.0/15 45.79.0.0/16"), "US",
            City("Fremont", "California", 37.5485, -121.9886)),
    Hosting(_net(45102, "Alibaba Cloud", "47.242.0.0/15"), "HK",
            City("Hong Kong", "Hong Kong", 22.3193, 114.1694)),
)


@dataclass(frozen=True)
class Asset:
    code: str
    usd: float  # a static reference price, to size portfolios and withdrawals
    places: int  # decimal places the exchange shows and accepts
    popularity: float


ASSETS: tuple[Asset, ...] = (
    Asset("BTC", 67000.0, 8, 30), Asset("ETH", 3400.0, 6, 22), Asset("USDT", 1.0, 2, 28),
    Asset("USDC", 1.0, 2, 8), Asset("SOL", 160.0, 4, 10), Asset("XRP", 0.55, 2, 8),
    Asset("LTC", 80.0, 6, 4), Asset("DOGE", 0.15, 2, 6), Asset("ADA", 0.45, 2, 5),
)
ASSET_BY_CODE = {a.code: a for a in ASSETS}

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_RIPPLE58 = "rpshnaf39wBUDNEGHJKLM4PQRST7VWXYZ2bcdeCg65jkm8oFqi1tuvAxyz"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _chars(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def make_address(rng: random.Random, asset: str) -> str:
    """A destination address in the format of the asset's usual network."""
    if asset == "BTC":
        if rng.random() < 0.7:
            return "bc1q" + _chars(rng, _BECH32, 38)
        return rng.choice("13") + _chars(rng, _BASE58, 33)
    if asset in ("ETH", "USDC") or (asset == "USDT" and rng.random() < 0.45):
        return "0x" + f"{rng.getrandbits(160):040x}"
    if asset == "USDT":  # TRC-20
        return "T" + _chars(rng, _BASE58, 33)
    if asset == "SOL":
        return _chars(rng, _BASE58, rng.choice((43, 44)))
    if asset == "XRP":
        return "r" + _chars(rng, _RIPPLE58, rng.randint(24, 33))
    if asset == "LTC":
        if rng.random() < 0.6:
            return "ltc1q" + _chars(rng, _BECH32, 38)
        return "L" + _chars(rng, _BASE58, 33)
    if asset == "DOGE":
        return "D" + _chars(rng, _BASE58, 33)
    if asset == "ADA":
        return "addr1q" + _chars(rng, _BECH32, 97)
    raise ValueError(f"no address format for {asset}")


ADDRESS_LABELS = (
    "Ledger", "Ledger Nano X", "Trezor", "cold wallet", "my cold storage", "MetaMask",
    "Trust Wallet", "Phantom", "Exodus", "hardware wallet", "savings", "Kraken deposit",
    "Binance", "Coinbase", "OKX", "Bybit", "mom", "rent", "business account", "DCA stash",
    "long-term hodl", "Electrum", "Rabby", "Safe multisig", "Bitbox02",
    # Untrusted text, as clients type it: the console must render it literally.
    "[b]main[/b] wallet", "savings 💰", "wallet <old>",
)

# (user agent template, browser template, os template, device type, weight)
DESKTOP_AGENTS = (
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/{c}.0.0.0 Safari/537.36", "Chrome {c}", "Windows 10", 40),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/{c}.0.0.0 Safari/537.36 Edg/{c}.0.0.0", "Edge {c}", "Windows 10", 10),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{f}.0) Gecko/20100101 Firefox/{f}.0",
     "Firefox {f}", "Windows 10", 8),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.{s} Safari/605.1.15", "Safari 17.{s}", "Mac OS X 10.15.7", 15),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/{c}.0.0.0 Safari/537.36", "Chrome {c}", "Mac OS X 10.15.7", 15),
    ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:{f}.0) Gecko/20100101 Firefox/{f}.0",
     "Firefox {f}", "Ubuntu", 5),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/{c}.0.0.0 Safari/537.36", "Chrome {c}", "Linux", 4),
)
ANDROID_MODELS = ("SM-S918B", "Pixel 8", "SM-A546B", "2201116SG", "CPH2449", "moto g54 5G",
                  "SM-A155F", "Redmi Note 13", "Pixel 7a", "V2250")
IPHONE_MODELS = ("iPhone14,5", "iPhone15,2", "iPhone15,4", "iPhone16,1", "iPhone13,2")


@dataclass(frozen=True)
class Device:
    device_id: str
    user_agent: str
    browser: str
    os: str
    device_type: str

    @property
    def mobile(self) -> bool:
        return self.device_type in ("mobile", "tablet")


def make_device(rng: random.Random, kind: str, ios_share: float) -> Device:
    """A device whose user agent, browser, OS and type agree with each other."""
    device_id = f"{rng.getrandbits(128):032x}"
    chrome, firefox, safari = rng.randint(121, 126), rng.randint(122, 127), rng.randint(0, 5)
    if kind == "desktop":
        agents = DESKTOP_AGENTS
        ua, browser, os_name, _w = rng.choices(agents, weights=[a[3] for a in agents])[0]
        fill = {"c": chrome, "f": firefox, "s": safari}
        return Device(device_id, ua.format(**fill), browser.format(**fill), os_name, "desktop")
    if kind == "tablet":
        ua = (f"Mozilla/5.0 (iPad; CPU OS 17_{safari} like Mac OS X) AppleWebKit/605.1.15 "
              f"(KHTML, like Gecko) Version/17.{safari} Mobile/15E148 Safari/604.1")
        return Device(device_id, ua, f"Mobile Safari 17.{safari}", f"iOS 17.{safari}", "tablet")
    app = rng.random() < 0.6  # most clients trade in the app
    app_version = f"5.{rng.randint(8, 14)}.{rng.randint(0, 9)}"
    if rng.random() < ios_share:
        ios = f"17.{safari}"
        if app:
            ua = f"PolyCoin/{app_version} ({rng.choice(IPHONE_MODELS)}; iOS {ios}; Scale/3.00)"
            return Device(device_id, ua, f"PolyCoin App {app_version.rsplit('.', 1)[0]}",
                          f"iOS {ios}", "mobile")
        ua = (f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_{safari} like Mac OS X) "
              f"AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.{safari} Mobile/15E148 "
              f"Safari/604.1")
        return Device(device_id, ua, f"Mobile Safari 17.{safari}", f"iOS {ios}", "mobile")
    android = rng.choice((12, 13, 13, 14, 14, 14))
    model = rng.choice(ANDROID_MODELS)
    if app:
        ua = f"PolyCoin/{app_version} (Android {android}; {model})"
        return Device(device_id, ua, f"PolyCoin App {app_version.rsplit('.', 1)[0]}",
                      f"Android {android}", "mobile")
    ua = (f"Mozilla/5.0 (Linux; Android {android}; {model}) AppleWebKit/537.36 (KHTML, like "
          f"Gecko) Chrome/{chrome}.0.0.0 Mobile Safari/537.36")
    return Device(device_id, ua, f"Chrome Mobile {chrome}", f"Android {android}", "mobile")


BOT_DEVICE = Device("", "python-requests/2.31.0", "Python Requests 2.31", "Other", "bot")
HEADLESS_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
               "HeadlessChrome/124.0.0.0 Safari/537.36")

# Local hour of day weights: quiet at night, peaks at lunch and in the evening.
HOUR_WEIGHTS = (2, 1, 1, 1, 1, 2, 4, 7, 9, 9, 8, 8, 10, 9, 8, 8, 8, 9, 11, 13, 14, 13, 9, 5)

# (class, share of accounts, logins per day range, chance that a login is followed by a
# withdrawal): a few daily traders, many occasional clients, a dormant tail.
ACTIVITY = (
    ("daily", 0.12, (1.0, 3.5), 0.04),
    ("regular", 0.25, (0.3, 0.9), 0.08),
    ("weekly", 0.30, (0.08, 0.25), 0.18),
    ("monthly", 0.18, (0.02, 0.06), 0.35),
    ("dormant", 0.15, (0.0, 0.008), 0.5),
)


# ============================================================================ helpers


def _fill(rng: random.Random, template: str) -> str:
    out = []
    for ch in template:
        if ch == "#":
            out.append(str(rng.randrange(10)))
        elif ch == "N":
            out.append(str(rng.randint(2, 9)))
        elif ch == "L":
            out.append(chr(ord("A") + rng.randrange(26)))
        else:
            out.append(ch)
    return "".join(out)


_FOLD = str.maketrans({"ł": "l", "Ł": "L", "ß": "ss", "ø": "o", "Ø": "O", "æ": "ae",
                       "đ": "d", "Đ": "D", "\u0131": "i"})


def _ascii(text: str) -> str:
    """A name folded to the lower-case ASCII letters of an email's local part."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return "".join(c for c in decomposed if c.isascii() and c.isalnum()).lower()


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371.0 * 2 * math.asin(math.sqrt(a))


def _rtt(rng: random.Random, city: City, mobile: bool) -> int:
    # Light in fibre covers about 100 km of round trip per millisecond; add the last mile.
    base = 12 + _km(city.lat, city.lon, EXCHANGE_LAT, EXCHANGE_LON) / 100
    return int(base + rng.uniform(0, 25) + (rng.uniform(20, 60) if mobile else 0))


def _quantize(value: float, places: int) -> Decimal:
    return Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)


def _human_amount(rng: random.Random, value: float, places: int) -> Decimal:
    """Clients type round figures more often than not."""
    if value > 0 and rng.random() < 0.45:
        magnitude = 10 ** (math.floor(math.log10(value)) - 1)
        value = math.floor(value / magnitude) * magnitude
    return _quantize(value, places)


def _amount_text(value: Decimal, places: int) -> str:
    return f"{value:.{places}f}"


def _weighted_sample(rng: random.Random, items: Sequence[Asset], k: int) -> list[Asset]:
    pool = list(items)
    chosen: list[Asset] = []
    for _ in range(min(k, len(pool))):
        pick = rng.choices(pool, weights=[a.popularity for a in pool])[0]
        chosen.append(pick)
        pool.remove(pick)
    return chosen


# ============================================================================ the model


@dataclass
class Home:
    city: City
    isp: Network
    ips: list[str]
    weight: float


@dataclass
class Payout:
    """Where a client sends one asset: a few recurring addresses, typical amounts."""

    asset: Asset
    addresses: list[tuple[str, str | None]]
    median_usd: float
    sigma: float
    weight: float


@dataclass
class Trip:
    first_day: int
    last_day: int
    city: City
    country: str
    network: Network


@dataclass
class LastLogin:
    login_id: str
    ip: str
    device_id: str
    at: datetime


@dataclass
class Profile:
    ext_id: str
    country: Country
    created_at: datetime
    email: str
    full_name: str
    phone: str | None
    date_of_birth: str | None
    address: str | None
    balances: dict[str, Decimal]
    totp_secret: str | None
    totp_enrolled_at: datetime | None
    activity: str
    rate: float
    p_withdraw: float
    homes: list[Home]
    devices: list[Device]
    payouts: list[Payout]
    new_device: tuple[int, Device] | None = None
    trip: Trip | None = None
    known_devices: set[str] = field(default_factory=set)
    last_login: LastLogin | None = None

    def usd_value(self, asset: str) -> float:
        return float(self.balances.get(asset, 0)) * ASSET_BY_CODE[asset].usd

    def largest_asset(self) -> str | None:
        if not self.balances:
            return None
        return max(self.balances, key=lambda code: (self.usd_value(code), code))

    def record(self) -> Record:
        rec: Record = {
            "id": self.ext_id,
            "created_at": _iso(self.created_at),
            "email": self.email,
            "full_name": self.full_name,
            "phone": self.phone,
            "date_of_birth": self.date_of_birth,
            "address": self.address,
            "country": self.country.code,
            "balances": {code: _amount_text(v, ASSET_BY_CODE[code].places)
                         for code, v in self.balances.items()},
        }
        if self.totp_secret and self.totp_enrolled_at:
            rec["totp_secret"] = self.totp_secret
            rec["totp_enrolled_at"] = _iso(self.totp_enrolled_at)
        return {k: v for k, v in rec.items() if v is not None}


@dataclass(frozen=True)
class DemoSpec:
    accounts: int = 2000
    days: int = 30
    seed: int = 7
    anchor: datetime = field(default_factory=lambda: default_anchor())

    def __post_init__(self) -> None:
        if self.accounts < 50:
            raise InputError("--accounts must be at least 50 (the attacks need victims)")
        if self.days < 5:
            raise InputError("--days must be at least 5 (the attacks span the last 4 days)")
        if self.anchor.tzinfo is None:
            raise InputError("the anchor needs a time zone")

    @property
    def start(self) -> datetime:
        return self.anchor - self.days * DAY


def default_anchor(now: datetime | None = None) -> datetime:
    """The current UTC time floored to the hour: the data ends "now"."""
    current = (now or datetime.now(UTC)).astimezone(UTC)
    return current.replace(minute=0, second=0, microsecond=0)


def parse_anchor(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"--anchor {text!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise InputError(f"--anchor {text!r} has no time zone (add Z or +00:00)")
    return parsed.astimezone(UTC).replace(microsecond=0)


@dataclass
class Scenario:
    id: int
    kind: str
    account: str | None
    source_ip: str | None
    started_at: datetime
    description: str
    events: list[tuple[str, str]] = field(default_factory=list)  # (event type, external id)


# ============================================================================ the generator


class DemoGenerator:
    """Builds the exchange from the seed. Call `account_records`, `login_records`,
    `security_event_records`, `withdrawal_records` in that order: logins are streamed
    day by day and fill the (much smaller) security-event and withdrawal buffers."""

    def __init__(self, spec: DemoSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)  # noqa: S311 - reproducible demo data, not secrets
        self.start = spec.start
        self.anchor = spec.anchor
        self._ids: set[str] = set()
        self._emails: set[str] = set()
        self.profiles = self._build_profiles()
        self.scenarios: list[Scenario] = []
        self._scenario_logins: dict[int, list[Timed]] = {}
        self._security: list[Timed] = []
        self._withdrawals: list[Timed] = []
        self._plan_history_events()
        self._plan_scenarios()
        self._logins_done = False

    # ------------------------------------------------------------------ identifiers

    def _new_id(self, prefix: str) -> str:
        while True:
            ident = f"{prefix}_{self.rng.getrandbits(64):016x}"
            if ident not in self._ids:
                self._ids.add(ident)
                return ident

    # ------------------------------------------------------------------ accounts

    def _build_profiles(self) -> list[Profile]:
        rng, spec = self.rng, self.spec
        countries = list(COUNTRIES)
        weights = [c.weight for c in countries]
        created: list[datetime] = []
        for _ in range(spec.accounts):
            if rng.random() < 0.04:  # sign-ups during the period
                span = (spec.days - 1) * 86400
                created.append(self.start + timedelta(seconds=rng.randrange(span)))
            else:  # earlier, more of them in the recent past
                age_days = 1 + int(1800 * rng.random() ** 1.6)
                created.append(self.start - timedelta(days=age_days, seconds=rng.randrange(86400)))
        created.sort()
        numbers = sorted(rng.sample(range(10_000_000, 100_000_000), spec.accounts))
        profiles = []
        for number, created_at in zip(numbers, created, strict=True):
            country = rng.choices(countries, weights=weights)[0]
            profiles.append(self._profile(f"U{number}", country, created_at))
        return profiles

    def _profile(self, ext_id: str, country: Country, created_at: datetime) -> Profile:
        rng = self.rng
        first, last = rng.choice(country.first_names), rng.choice(country.last_names)
        full_name = f"{last} {first}" if country.family_first else f"{first} {last}"
        age = int(18 + min(57, rng.lognormvariate(math.log(16), 0.55)))
        birth = date(self.anchor.year - age, 1, 1) + timedelta(days=rng.randrange(365))
        email = self._email(rng, country, first, last, birth.year)
        city_weights = [1.0 / (i + 1) for i in range(len(country.cities))]
        cities = rng.choices(country.cities, weights=city_weights, k=3)
        n_homes = rng.choices((1, 2, 3), weights=(70, 25, 5))[0]
        homes = []
        for i in range(n_homes):
            isp = rng.choice(country.isps)
            ips = [isp.address(rng) for _ in range(rng.choice((1, 1, 2)))]
            homes.append(Home(cities[i] if i == 0 else rng.choice(country.cities), isp, ips,
                              1.0 if i == 0 else rng.uniform(0.15, 0.4)))
        address = None
        if rng.random() < 0.93:
            address = country.address.format(
                n=rng.randint(1, 240), street=rng.choice(country.streets),
                zip=_fill(rng, country.postcode), city=homes[0].city.name,
                region=homes[0].city.region,
            )
        devices = [make_device(rng, "mobile" if rng.random() < 0.65 else "desktop",
                               country.ios_share)]
        for _ in range(rng.choices((0, 1, 2), weights=(40, 45, 15))[0]):
            kind = "desktop" if devices[0].mobile else "mobile"
            if len(devices) == 2:
                kind = rng.choice(("tablet", "desktop", "mobile"))
            devices.append(make_device(rng, kind, country.ios_share))
        activity, _share, (lo, hi), p_withdraw = rng.choices(
            ACTIVITY, weights=[a[1] for a in ACTIVITY])[0]
        rate = rng.uniform(lo, hi)
        balances = self._balances(rng, activity)
        totp_secret = totp_at = None
        if rng.random() < 0.875:
            totp_secret = base64.b32encode(rng.getrandbits(160).to_bytes(20, "big")).decode()
            totp_at = min(created_at + timedelta(seconds=int(rng.expovariate(1 / 86400 / 20))),
                          self.anchor - timedelta(hours=2))
        profile = Profile(
            ext_id=ext_id, country=country, created_at=created_at, email=email,
            full_name=full_name,
            phone=_fill(rng, country.phone) if rng.random() < 0.9 else None,
            date_of_birth=birth.isoformat() if rng.random() < 0.95 else None,
            address=address, balances=balances, totp_secret=totp_secret,
            totp_enrolled_at=totp_at, activity=activity, rate=rate, p_withdraw=p_withdraw,
            homes=homes, devices=devices, payouts=[],
        )
        profile.known_devices = {d.device_id for d in devices}
        profile.payouts = self._payouts(rng, profile)
        if rng.random() < 0.08:  # a new phone or laptop during the period
            day = rng.randrange(1, self.spec.days)
            kind = "mobile" if rng.random() < 0.7 else "desktop"
            profile.new_device = (day, make_device(rng, kind, country.ios_share))
        if activity in ("daily", "regular", "weekly") and rng.random() < 0.06:
            profile.trip = self._trip(rng, country)
        return profile

    def _email(self, rng: random.Random, country: Country, first: str, last: str,
               year: int) -> str:
        f, la = _ascii(first), _ascii(last)
        domain = rng.choice(country.domains)
        style = rng.random()
        if style < 0.3:
            local = f"{f}.{la}"
        elif style < 0.5:
            local = f"{f}{la}{rng.randint(1, 99)}"
        elif style < 0.62:
            local = f"{f[0]}.{la}"
        elif style < 0.75:
            local = f"{f}.{la}{year % 100:02d}"
        elif style < 0.88:
            local = f"{f}_{la}{year}"
        else:
            handle = rng.choice(("hodl", "satoshi", "moon", "crypto", "degen", "stack", "sats"))
            local = f"{handle}{rng.choice(('', '_', '.'))}{f}{rng.randint(1, 999)}"
        email = f"{local}@{domain}"
        while email in self._emails:
            email = f"{local}{rng.randint(1, 9999)}@{domain}"
        self._emails.add(email)
        return email

    def _balances(self, rng: random.Random, activity: str) -> dict[str, Decimal]:
        if rng.random() < 0.08:
            return {}  # funded once, emptied since
        value = min(5_000_000.0, rng.lognormvariate(math.log(1200), 1.7))
        if activity in ("monthly", "dormant"):
            value *= 0.4
        count = rng.choices((1, 2, 3, 4, 5), weights=(25, 30, 25, 12, 8))[0]
        chosen = _weighted_sample(rng, ASSETS, count)
        shares = [rng.expovariate(1.0) for _ in chosen]
        total = sum(shares)
        balances: dict[str, Decimal] = {}
        for asset, share in zip(chosen, shares, strict=True):
            amount = _quantize(value * share / total / asset.usd, asset.places)
            if amount > 0:
                balances[asset.code] = amount
        return balances

    def _payouts(self, rng: random.Random, profile: Profile) -> list[Payout]:
        if not profile.balances or rng.random() > 0.75:
            return []
        by_value = sorted(profile.balances, key=lambda c: (-profile.usd_value(c), c))
        payouts = []
        for rank, code in enumerate(by_value[: rng.choice((1, 1, 2))]):
            addresses = []
            for _ in range(rng.choices((1, 2, 3), weights=(55, 35, 10))[0]):
                label = rng.choice(ADDRESS_LABELS) if rng.random() < 0.5 else None
                addresses.append((make_address(rng, code), label))
            value = profile.usd_value(code)
            payouts.append(Payout(ASSET_BY_CODE[code], addresses,
                                  max(15.0, value * rng.uniform(0.03, 0.2)),
                                  rng.uniform(0.4, 0.9), 1.0 if rank == 0 else 0.4))
        return payouts

    def _trip(self, rng: random.Random, home: Country) -> Trip:
        first = rng.randrange(0, self.spec.days - 3)
        last = min(self.spec.days - 1, first + rng.randint(3, 9))
        if rng.random() < 0.5 and len(home.cities) > 1:
            dest = home
            city = rng.choice(home.cities[1:])
        else:
            dest = rng.choice([c for c in COUNTRIES if c.code != home.code])
            city = dest.cities[0]
        network = dest.mobile if rng.random() < 0.4 else rng.choice(dest.isps)
        return Trip(first, last, city, dest.code, network)

    def account_records(self) -> Iterator[tuple[int, Record]]:
        for n, profile in enumerate(self.profiles, 1):
            yield n, profile.record()

    # ------------------------------------------------------------------ records

    def _login(self, profile_id: str, at: datetime, *, success: bool, ip: str, network: Network,
               country: str, city: City, device: Device, rtt: int,
               failure_reason: str | None = None) -> Timed:
        ident = self._new_id("lgn")
        rec: Record = {
            "id": ident, "account": profile_id, "at": _iso(at), "success": success,
            "ip": ip, "asn": network.asn, "country": country, "region": city.region,
            "city": city.name, "lat": city.lat, "lon": city.lon,
            "user_agent": device.user_agent, "browser": device.browser, "os": device.os,
            "device_type": device.device_type, "rtt_ms": rtt,
        }
        if device.device_id:
            rec["device_id"] = device.device_id
        if not success:
            rec["failure_reason"] = failure_reason or "bad_password"
        return at, ident, rec

    def _security_event(self, account: str, at: datetime, kind: str, *, ip: str | None,
                        device_id: str | None, details: dict[str, Any] | None = None) -> str:
        ident = self._new_id("sev")
        rec: Record = {"id": ident, "account": account, "at": _iso(at), "kind": kind}
        if ip:
            rec["ip"] = ip
        if device_id:
            rec["device_id"] = device_id
        if details:
            rec["details"] = details
        self._security.append((at, ident, rec))
        return ident

    def _withdrawal(self, account: str, at: datetime, asset: Asset, amount: Decimal,
                    available: Decimal, address: str, label: str | None, ip: str,
                    device_id: str | None, login_id: str) -> str:
        ident = self._new_id("wdr")
        rec: Record = {
            "id": ident, "account": account, "at": _iso(at), "asset": asset.code,
            "amount": _amount_text(amount, asset.places),
            "available_balance": _amount_text(available, asset.places),
            "address": address, "ip": ip, "login_id": login_id,
        }
        if label:
            rec["address_label"] = label
        if device_id:
            rec["device_id"] = device_id
        self._withdrawals.append((at, ident, rec))
        return ident

    # ------------------------------------------------------------------ history

    def _plan_history_events(self) -> None:
        """The enrolments behind the TOTP secrets, as the platform logged them."""
        for p in self.profiles:
            if p.totp_enrolled_at is not None:
                home = p.homes[0]
                self._security_event(p.ext_id, p.totp_enrolled_at, "2fa_enabled",
                                     ip=home.ips[0], device_id=p.devices[0].device_id,
                                     details={"method": "totp"})

    # ------------------------------------------------------------------ normal logins

    def _day_index(self, at: datetime) -> int:
        return int((at - self.start) // DAY)

    def login_records(self) -> Iterator[tuple[int, Record]]:
        """Day by day, each day's logins sorted by time: the table ends up in
        chronological order without holding the whole period in memory."""
        n = 0
        for day in range(self.spec.days):
            day_start = self.start + day * DAY
            chunk: list[Timed] = []
            for profile in self.profiles:
                self._day_of(profile, day, day_start, chunk)
            chunk.extend(self._scenario_logins.pop(day, []))
            chunk.sort(key=lambda item: (item[0], item[1]))
            for _at, _ident, rec in chunk:
                n += 1
                yield n, rec
        self._logins_done = True

    def _day_of(self, p: Profile, day: int, day_start: datetime, out: list[Timed]) -> None:
        rng = self.rng
        day_end = day_start + DAY
        if p.created_at >= day_end:
            return
        sessions = _poisson(rng, p.rate)
        if p.created_at >= day_start:
            sessions += 1  # a new client logs in right after signing up
        if not sessions:
            return
        trip = p.trip if p.trip and p.trip.first_day <= day <= p.trip.last_day else None
        if trip and day in (trip.first_day, trip.last_day):
            return  # on the plane
        starts = []
        midnight = day_start.replace(hour=0, minute=0, second=0)
        for _ in range(sessions):
            hour = rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
            local = hour * 3600 + rng.randrange(3600)
            tod = int(local - p.country.utc_offset * 3600) % 86400
            at = midnight + timedelta(seconds=tod)
            if at < day_start:
                at += DAY
            if at < p.created_at:
                at = p.created_at + timedelta(seconds=rng.randint(30, 900))
            starts.append(at)
        for at in sorted(starts):
            self._session(p, day, at, day_end, trip, out)

    def _session(self, p: Profile, day: int, at: datetime, day_end: datetime,
                 trip: Trip | None, out: list[Timed]) -> None:
        rng = self.rng
        devices = list(p.devices)
        if p.new_device and day >= p.new_device[0]:
            devices.insert(0, p.new_device[1])
        if trip:
            device = next((d for d in devices if d.mobile), devices[0])
            network, city, country = trip.network, trip.city, trip.country
            ip = network.address(rng)
        else:
            home = rng.choices(p.homes, weights=[h.weight for h in p.homes])[0]
            device = rng.choices(devices, weights=[1.0 / (i + 1) ** 1.5
                                                   for i in range(len(devices))])[0]
            city, country = home.city, p.country.code
            if device.mobile and rng.random() < 0.5:
                network = p.country.mobile
                ip = network.address(rng, allow_v6=rng.random() < 0.5)
            else:
                network, ip = home.isp, rng.choice(home.ips)
        rtt = _rtt(rng, city, device.mobile)
        events: list[tuple[datetime, bool, str | None]] = []
        t = at
        roll = rng.random()
        has_totp = p.totp_enrolled_at is not None and p.totp_enrolled_at < at
        reset = False
        if roll < 0.035:  # a typo or two
            for _ in range(1 if rng.random() < 0.8 else rng.randint(2, 3)):
                events.append((t, False, "bad_password"))
                t += timedelta(seconds=rng.randint(6, 45))
        elif roll < 0.047 and has_totp:  # the code had just rolled over
            events.append((t, False, "bad_totp"))
            t += timedelta(seconds=rng.randint(15, 60))
        elif roll < 0.0485:  # forgot the password: a few tries, a reset, back in
            for _ in range(rng.randint(3, 6)):
                events.append((t, False, "bad_password"))
                t += timedelta(seconds=rng.randint(10, 50))
            t += timedelta(seconds=rng.randint(90, 600))
            reset = True
        if t >= day_end:
            return
        login_id = ""
        events.append((t, True, None))
        for when, success, reason in events:
            item = self._login(p.ext_id, when, success=success, ip=ip, network=network,
                               country=country, city=city, device=device, rtt=rtt,
                               failure_reason=reason)
            out.append(item)
            login_id = item[1]
        if reset:
            self._security_event(p.ext_id, t - timedelta(seconds=rng.randint(30, 80)),
                                 "password_reset", ip=ip, device_id=device.device_id,
                                 details={"method": "email_link"})
        p.last_login = LastLogin(login_id, ip, device.device_id, t)
        self._after_login(p, t, ip, device, login_id)

    def _after_login(self, p: Profile, t: datetime, ip: str, device: Device,
                     login_id: str) -> None:
        rng = self.rng
        if device.device_id not in p.known_devices:
            p.known_devices.add(device.device_id)
            self._security_event(p.ext_id, t, "new_device", ip=ip, device_id=device.device_id,
                                 details={"device_type": device.device_type,
                                          "browser": device.browser, "os": device.os})
            if device.mobile and p.totp_secret and rng.random() < 0.35:
                # A new phone: the client moves the authenticator (benign look-alike).
                self._security_event(p.ext_id, t + timedelta(seconds=rng.randint(120, 900)),
                                     "2fa_change", ip=ip, device_id=device.device_id,
                                     details={"method": "totp", "reason": "new_phone"})
        roll = rng.random()
        later = t + timedelta(seconds=rng.randint(40, 900))
        if later < self.anchor:
            if roll < 0.0025:
                self._security_event(p.ext_id, later, "password_change", ip=ip,
                                     device_id=device.device_id)
            elif roll < 0.0035 and p.activity == "daily":
                self._security_event(p.ext_id, later, "api_key_created", ip=ip,
                                     device_id=device.device_id,
                                     details={"label": rng.choice(("trading bot", "tax export",
                                                                   "portfolio tracker")),
                                              "permissions": ["read", "trade"]})
            elif roll < 0.0040:
                self._security_event(p.ext_id, later, "phone_change", ip=ip,
                                     device_id=device.device_id)
            elif roll < 0.0042:
                self._security_event(p.ext_id, later, "email_change", ip=ip,
                                     device_id=device.device_id,
                                     details={"old_domain": p.email.rsplit("@", 1)[1],
                                              "new_domain": rng.choice(p.country.domains)})
        if p.payouts and rng.random() < p.p_withdraw:
            self._routine_withdrawal(p, t, ip, device, login_id)

    def _routine_withdrawal(self, p: Profile, t: datetime, ip: str, device: Device,
                            login_id: str) -> None:
        rng = self.rng
        at = t + timedelta(seconds=rng.randint(60, 1500))
        if at >= self.anchor:
            return
        payout = rng.choices(p.payouts, weights=[x.weight for x in p.payouts])[0]
        asset = payout.asset
        if rng.random() < 0.05:  # a one-off destination
            address, label = make_address(rng, asset.code), None
        else:
            address, label = rng.choices(
                payout.addresses, weights=[1.0 / (i + 1) for i in range(len(payout.addresses))]
            )[0]
        balance = float(p.balances[asset.code])
        available = _quantize(balance * rng.uniform(0.9, 1.5), asset.places)
        usd = rng.lognormvariate(math.log(payout.median_usd), payout.sigma)
        amount = _human_amount(rng, min(usd / asset.usd, float(available) * 0.85), asset.places)
        if amount <= 0 or available <= 0:
            return
        self._withdrawal(p.ext_id, at, asset, amount, available, address, label, ip,
                         device.device_id, login_id)

    def security_event_records(self) -> Iterator[tuple[int, Record]]:
        assert self._logins_done, "login_records() fills the security events; run it first"
        self._security.sort(key=lambda item: (item[0], item[1]))
        for n, (_at, _ident, rec) in enumerate(self._security, 1):
            yield n, rec

    def withdrawal_records(self) -> Iterator[tuple[int, Record]]:
        assert self._logins_done, "login_records() fills the withdrawals; run it first"
        self._withdrawals.sort(key=lambda item: (item[0], item[1]))
        for n, (_at, _ident, rec) in enumerate(self._withdrawals, 1):
            yield n, rec

    # ------------------------------------------------------------------ attacks

    def _scenario(self, kind: str, account: str | None, source_ip: str | None,
                  started_at: datetime, description: str) -> Scenario:
        scenario = Scenario(len(self.scenarios) + 1, kind, account, source_ip, started_at,
                            description)
        self.scenarios.append(scenario)
        return scenario

    def _attack_login(self, scenario: Scenario, item: Timed) -> str:
        self._scenario_logins.setdefault(self._day_index(item[0]), []).append(item)
        scenario.events.append(("login", item[1]))
        return item[1]

    def _ago(self, lo_hours: float, hi_hours: float) -> datetime:
        seconds = int(self.rng.uniform(lo_hours, hi_hours) * 3600)
        return self.anchor - timedelta(seconds=seconds)

    def _victim(self, used: set[str], *, active: bool, needs_totp: bool = False,
                min_usd: float = 0.0) -> Profile:
        """An established client (signed up before the period) not yet in another attack."""
        def fits(p: Profile) -> bool:
            if p.ext_id in used or p.created_at >= self.start or p.trip is not None:
                return False
            if active and p.activity not in ("daily", "regular"):
                return False
            if needs_totp and p.totp_secret is None:
                return False
            largest = p.largest_asset()
            return min_usd <= 0 or (largest is not None and p.usd_value(largest) >= min_usd)

        candidates = [p for p in self.profiles if fits(p)]
        if not candidates:  # tiny demos: relax the wish list rather than fail
            candidates = [p for p in self.profiles
                          if p.ext_id not in used and p.largest_asset() is not None]
        victim = self.rng.choice(candidates)
        used.add(victim.ext_id)
        return victim

    def _plan_scenarios(self) -> None:
        used: set[str] = set()
        # Attacks land in the last four days; some in the last 24 hours for the dashboard.
        self._account_takeover(used, self._ago(3, 9), host_index=3, email_change=False)
        self._credential_stuffing(self._ago(10, 20))
        self._brute_force(used, self._ago(1.5, 22), bot=True)
        self._impossible_travel(used, self._ago(26, 46))
        self._password_spraying(self._ago(38, 56))
        self._brute_force(used, self._ago(50, 70), bot=False)
        self._account_takeover(used, self._ago(62, 80), host_index=None, email_change=True)
        self._impossible_travel(used, self._ago(74, 94))

    def _hosting_login(self, scenario: Scenario, account: str, at: datetime, host: Hosting,
                       ip: str, device: Device, *, success: bool = False,
                       reason: str = "bad_password") -> str:
        item = self._login(account, at, success=success, ip=ip, network=host.network,
                           country=host.country, city=host.city, device=device,
                           rtt=_rtt(self.rng, host.city, False),
                           failure_reason=None if success else reason)
        return self._attack_login(scenario, item)

    def _brute_force(self, used: set[str], at: datetime, *, bot: bool) -> None:
        rng = self.rng
        victim = self._victim(used, active=False)
        host = rng.choice(HOSTING)
        ip = host.network.address(rng)
        attempts = rng.randint(30, 60)
        device = BOT_DEVICE if bot else Device(
            f"{rng.getrandbits(128):032x}", HEADLESS_UA, "HeadlessChrome 124", "Linux", "desktop")
        t = at
        scenario = self._scenario(
            "brute_force", victim.ext_id, ip, at,
            f"{attempts} failed logins on {victim.ext_id} within minutes from {ip} "
            f"(AS{host.network.asn} {host.network.org}, {host.country}); "
            f"client {device.browser}",
        )
        for _ in range(attempts):
            self._hosting_login(scenario, victim.ext_id, t, host, ip, device)
            t += timedelta(seconds=rng.randint(3, 18))
        minutes = max(1, round((t - at).total_seconds() / 60))
        scenario.description = scenario.description.replace("within minutes",
                                                            f"in {minutes} minutes")

    def _credential_stuffing(self, at: datetime) -> None:
        rng = self.rng
        host = HOSTING[0] if rng.random() < 0.5 else HOSTING[3]
        ip = host.network.address(rng)
        count = min(rng.randint(120, 170), len(self.profiles) - 20)
        targets = rng.sample([p for p in self.profiles if p.created_at < at], count)
        winners = set(rng.sample(range(count), 3))
        duration = rng.randint(20 * 60, 40 * 60)
        times = sorted(at + timedelta(seconds=rng.randrange(duration)) for _ in targets)
        agents = [make_device(rng, "desktop", 0.0) for _ in range(4)]
        scenario = self._scenario(
            "credential_stuffing", None, ip, times[0],
            f"{ip} (AS{host.network.asn} {host.network.org}, {host.country}) tried "
            f"{count} different accounts in {duration // 60} minutes with leaked "
            f"passwords; {len(winners)} logins succeeded",
        )
        for i, (target, t) in enumerate(zip(targets, times, strict=True)):
            # Stuffing tools rotate user agents and fingerprints on every request.
            base = agents[i % len(agents)]
            device = Device(f"{rng.getrandbits(128):032x}", base.user_agent, base.browser,
                            base.os, base.device_type)
            self._hosting_login(scenario, target.ext_id, t, host, ip, device,
                                success=i in winners)

    def _password_spraying(self, at: datetime) -> None:
        rng = self.rng
        host = HOSTING[2] if rng.random() < 0.5 else HOSTING[6]
        ip = host.network.address(rng)
        count = min(rng.randint(150, 220), len(self.profiles) - 20)
        targets = rng.sample([p for p in self.profiles if p.created_at < at], count)
        hours = rng.randint(5, 8)
        device = make_device(rng, "desktop", 0.0)
        scenario = self._scenario(
            "password_spraying", None, ip, at,
            f"{ip} (AS{host.network.asn} {host.network.org}, {host.country}) tried one or "
            f"two common passwords on each of {count} accounts, slowly, over {hours} hours",
        )
        span = hours * 3600
        for i, target in enumerate(targets):
            t = at + timedelta(seconds=span * i // count + rng.randint(0, 40))
            self._hosting_login(scenario, target.ext_id, t, host, ip, device)
            if rng.random() < 0.3:  # the second password of the list, one round later
                second = t + timedelta(seconds=span // 2 + rng.randint(0, 600))
                if second < self.anchor:
                    self._hosting_login(scenario, target.ext_id, second, host, ip, device)

    def _impossible_travel(self, used: set[str], at: datetime) -> None:
        rng = self.rng
        victim = self._victim(used, active=True)
        home = victim.homes[0]
        device = victim.devices[0]
        far = rng.choice([c for c in COUNTRIES if c.continent != victim.country.continent])
        city = rng.choice(far.cities)
        network = rng.choice(far.isps)
        ip = network.address(rng)
        gap = rng.randint(12 * 60, 50 * 60)
        km = _km(home.city.lat, home.city.lon, city.lat, city.lon)
        scenario = self._scenario(
            "impossible_travel", victim.ext_id, ip, at,
            f"{victim.ext_id} logged in from {home.city.name} ({victim.country.code}), then "
            f"{gap // 60} minutes later from {city.name} ({far.code}, AS{network.asn} "
            f"{network.org}), {km:,.0f} km away ({km / (gap / 3600):,.0f} km/h)",
        )
        first = self._login(victim.ext_id, at, success=True, ip=home.ips[0], network=home.isp,
                            country=victim.country.code, city=home.city, device=device,
                            rtt=_rtt(rng, home.city, device.mobile))
        self._attack_login(scenario, first)
        intruder = make_device(rng, "desktop", 0.0)
        second_at = at + timedelta(seconds=gap)
        second = self._login(victim.ext_id, second_at, success=True, ip=ip, network=network,
                             country=far.code, city=city, device=intruder,
                             rtt=_rtt(rng, city, False))
        self._attack_login(scenario, second)
        sev = self._security_event(victim.ext_id, second_at, "new_device", ip=ip,
                                   device_id=intruder.device_id,
                                   details={"device_type": "desktop",
                                            "browser": intruder.browser, "os": intruder.os})
        scenario.events.append(("security_event", sev))

    def _account_takeover(self, used: set[str], at: datetime, *, host_index: int | None,
                          email_change: bool) -> None:
        rng = self.rng
        victim = self._victim(used, active=True, needs_totp=True, min_usd=3000.0)
        asset_code = victim.largest_asset()
        assert asset_code is not None
        asset = ASSET_BY_CODE[asset_code]
        if host_index is not None:
            host = HOSTING[host_index]
            network, country, city = host.network, host.country, host.city
        else:
            abroad = rng.choice([c for c in COUNTRIES if c.code != victim.country.code
                                 and c.continent != victim.country.continent])
            network, country, city = rng.choice(abroad.isps), abroad.code, abroad.cities[0]
        ip = network.address(rng)
        device = make_device(rng, "desktop", 0.0)
        balance = victim.balances[asset_code]
        amount = _quantize(float(balance) * rng.uniform(0.94, 0.96), asset.places)
        address = make_address(rng, asset_code)
        scenario = self._scenario(
            "account_takeover", victim.ext_id, ip, at,
            f"{victim.ext_id} ({victim.country.code}) logged in from a new device at {ip} "
            f"(AS{network.asn} {network.org}, {country}), changed 2FA"
            f"{' and the email address' if email_change else ''}, then asked to withdraw "
            f"{_amount_text(amount, asset.places)} {asset_code} (~95% of the balance) to an "
            f"address never used before",
        )
        t = at
        if email_change:  # a phished TOTP code typed a little late
            fail = self._login(victim.ext_id, t, success=False, ip=ip, network=network,
                               country=country, city=city, device=device,
                               rtt=_rtt(rng, city, False), failure_reason="bad_totp")
            self._attack_login(scenario, fail)
            t += timedelta(seconds=rng.randint(20, 50))
        login = self._login(victim.ext_id, t, success=True, ip=ip, network=network,
                            country=country, city=city, device=device,
                            rtt=_rtt(rng, city, False))
        login_id = self._attack_login(scenario, login)
        sev = self._security_event(victim.ext_id, t, "new_device", ip=ip,
                                   device_id=device.device_id,
                                   details={"device_type": "desktop", "browser": device.browser,
                                            "os": device.os})
        scenario.events.append(("security_event", sev))
        t += timedelta(seconds=rng.randint(180, 480))
        sev = self._security_event(victim.ext_id, t, "2fa_change", ip=ip,
                                   device_id=device.device_id,
                                   details={"method": "totp", "reason": "user_settings"})
        scenario.events.append(("security_event", sev))
        if email_change:
            t += timedelta(seconds=rng.randint(120, 360))
            old_domain = victim.email.rsplit("@", 1)[1]
            sev = self._security_event(victim.ext_id, t, "email_change", ip=ip,
                                       device_id=device.device_id,
                                       details={"old_domain": old_domain,
                                                "new_domain": "proton.me"})
            scenario.events.append(("security_event", sev))
        t += timedelta(seconds=rng.randint(300, 900))
        wid = self._withdrawal(victim.ext_id, t, asset, amount, balance, address, None, ip,
                               device.device_id, login_id)
        scenario.events.append(("withdrawal", wid))


# ============================================================================ the database

INFO_KEYS = ("demo", "seed", "accounts", "days", "anchor")


@dataclass
class DemoResult:
    reused: bool
    info: dict[str, str]
    counts: dict[str, int]
    scenarios: list[dict[str, Any]]
    seconds: float


def embedded_demo_path(settings: Settings) -> Path | None:
    """The embedded demo SQLite file, or None when --db (or the config) chose another."""
    if settings.db_url != default_db_url(demo=True):
        return None
    database = make_url(settings.db_url).database
    return Path(database).expanduser() if database else None


def reset_embedded(settings: Settings) -> None:
    path = embedded_demo_path(settings)
    if path is None:
        raise InputError(
            f"--reset only deletes the embedded demo database; it refuses to touch "
            f"{redact(settings.db_url)} given with --db (empty that database yourself)"
        )
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def open_demo_runtime(settings: Settings, *, reset: bool = False) -> Runtime:
    """Keyring (created if missing), schema (upgraded), then the runtime."""
    if reset:
        reset_embedded(settings)
    created = write_new_keyring(settings.keyring_path, Keyring.generate())
    engine = make_engine(settings.db_url)
    try:
        check_connection(engine)
        migrate.upgrade(engine)
        if created:
            with engine.connect() as conn:
                holds_data = bool(conn.scalar(select(func.count()).select_from(Account)))
            if holds_data:
                raise InputError(
                    f"database {redact(engine.url)} holds accounts encrypted under another "
                    f"keyring than the new {settings.keyring_path}; "
                    + ("run `polysec demo --reset`" if embedded_demo_path(settings)
                       else "point --keyring at its keyring")
                )
    finally:
        engine.dispose()
    return open_runtime(settings)


def read_info(rt: Runtime) -> dict[str, str]:
    with rt.sessions() as session:
        return {row.key: row.value for row in session.scalars(select(DatabaseInfo))}


def _set_info(rt: Runtime, values: dict[str, str]) -> None:
    with rt.transaction() as session:
        for key, value in values.items():
            session.merge(DatabaseInfo(key=key, value=value))


def summarise(rt: Runtime) -> tuple[dict[str, int], list[dict[str, Any]]]:
    tables = {
        "accounts": Account, "totp_enrolments": TotpEnrolment, "balances": Balance,
        "logins": LoginEvent, "security_events": SecurityEvent, "withdrawals": Withdrawal,
    }
    with rt.sessions() as session:
        counts = {name: int(session.scalar(select(func.count()).select_from(model)) or 0)
                  for name, model in tables.items()}
        sizes = dict(session.execute(
            select(DemoScenarioEvent.scenario_id, func.count()).group_by(
                DemoScenarioEvent.scenario_id)
        ).all())
        scenarios = [
            {"id": s.id, "kind": s.kind, "account": s.account_external_id,
             "source_ip": s.source_ip, "started_at": s.started_at,
             "events": int(sizes.get(s.id, 0)), "description": s.description}
            for s in session.scalars(select(DemoScenario).order_by(DemoScenario.started_at))
        ]
    return counts, scenarios


def generate(rt: Runtime, spec: DemoSpec,
             progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Feed the generated exchange through ingest, then write the ground truth."""
    gen = DemoGenerator(spec)
    inserted: dict[str, int] = {}
    feeds = (
        ("accounts", gen.account_records),
        ("logins", gen.login_records),
        ("security-events", gen.security_event_records),
        ("withdrawals", gen.withdrawal_records),
    )
    for kind, records in feeds:
        began = time.monotonic()
        # Judged against the demo's present, its anchor (which may lie ahead of the clock).
        report = Ingestor(rt, kind, now=spec.anchor).run(records())
        inserted[kind] = report.inserted
        if progress:
            progress(f"{kind}: {report.inserted} ingested ({time.monotonic() - began:.1f} s)")
    with rt.transaction() as session:
        for scenario in gen.scenarios:
            session.add(DemoScenario(
                id=scenario.id, kind=scenario.kind, account_external_id=scenario.account,
                source_ip=scenario.source_ip, started_at=scenario.started_at,
                description=scenario.description,
            ))
        session.flush()
        session.add_all(
            DemoScenarioEvent(scenario_id=scenario.id, event_type=event_type, external_id=ext)
            for scenario in gen.scenarios for event_type, ext in scenario.events
        )
    return inserted


# ============================================================================ demo officers

# (name, role, password). The passwords are public on purpose: they are printed on the
# demo's login screen. The brief's `demo-<name>-password` would contain the officer's
# name, which the password policy refuses, so they name the role instead.
DEMO_OFFICERS: tuple[tuple[str, str, str], ...] = (
    ("alice", "analyst", "demo-analyst-passphrase"),
    ("sam", "senior", "demo-senior-passphrase"),
    ("ada", "admin", "demo-admin-passphrase"),
)


def create_demo_officers(rt: Runtime) -> bool:
    """alice (analyst), sam (senior) and ada (admin), unless the console has officers
    already (then nothing is created and False returned). ada is bootstrapped as the
    first admin; alice and sam are seeded as if they had joined a month ago, so that
    sam can be the second pair of eyes at once (a newly granted officer waits 24 hours,
    and an officer ada asked for could never approve ada's own requests)."""
    if officers.has_officers(rt):
        return False
    admin_name, _role, admin_password = DEMO_OFFICERS[-1]
    officers.bootstrap_admin(rt, admin_name, admin_password)
    officers.seed_officers(rt, DEMO_OFFICERS[:-1], rt.clock() - timedelta(days=30))
    return True


def screen_demo(rt: Runtime, at: datetime) -> ScreenReport:
    """Analyse the demo's logins and screen its withdrawals as ada, so the anomalies
    screen and the review queue have work in them. The
    clock is the demo's anchor (its "now"), so the same seed gives the same data."""
    admin_name = DEMO_OFFICERS[-1][0]
    with rt.sessions() as session:
        officer = session.scalars(select(Officer).where(Officer.name == admin_name)).first()
    if officer is None or officer.role != "admin":
        return ScreenReport()
    pinned = Runtime(rt.settings, rt.engine, rt.keyring, clock=lambda: at)
    ada = Actor(officer.id, officer.name, officer.role)
    # Login analysis first: the anomalies screen has findings, and screening's
    # risky_session rule sees the takeover's anomalous login, as in production.
    anomalies.analyze(pinned, ada, full=True)
    return screening.screen(pinned, ada)


def demo_login_hints(rt: Runtime) -> list[tuple[str, str, str, str]]:
    """(name, role, password, current code) of each demo officer, for the login screen.

    The rule: hints exist only when BOTH hold: ``rt.settings.demo`` is True (set only by
    `polysec demo`, through ``Settings.for_demo()``; `polysec tui` never sets it) AND the
    database marks itself as the finished demo (``database_info.demo == "true"``, which
    `polysec demo` writes only into a database it filled itself). Otherwise this raises
    RefusedError, so a real console never prints a password or a code, even if someone
    names an officer alice.
    """
    if not rt.settings.demo:
        raise RefusedError("login hints are shown by `polysec demo` only")
    if not rt.is_demo():
        raise RefusedError(f"{rt.database_label} is not the demo database: no login hints")
    now = rt.clock()
    hints: list[tuple[str, str, str, str]] = []
    with rt.sessions() as session:
        for name, role, password in DEMO_OFFICERS:
            officer = session.scalars(select(Officer).where(Officer.name == name)).first()
            if officer is None or officer.disabled or officer.role != role:
                continue
            secret = sessions.officer_secret(rt, officer)
            if secret is not None:
                hints.append((name, role, password, totp.code_at(secret, now)))
    return hints


def build_demo(settings: Settings, spec: DemoSpec, *, reset: bool = False,
               progress: Callable[[str], None] | None = None) -> DemoResult:
    """Open (or create) the demo database and fill it, unless it already holds the demo."""
    began = time.monotonic()
    rt = open_demo_runtime(settings, reset=reset)
    try:
        info = read_info(rt)
        state = info.get("demo")
        if state == "true":
            counts, scenarios = summarise(rt)
            return DemoResult(True, info, counts, scenarios, time.monotonic() - began)
        if state is not None:
            raise InputError(
                f"an earlier `polysec demo` into {rt.database_label} did not finish; "
                + ("run `polysec demo --reset`" if embedded_demo_path(settings)
                   else "empty that database and run it again")
            )
        counts, _ = summarise(rt)
        if counts["accounts"]:
            raise InputError(
                f"database {rt.database_label} already holds {counts['accounts']} accounts "
                "that are not demo data; `polysec demo` only fills an empty database"
            )
        # Marked first, so that an interrupted run is recognised and never mistaken for
        # real data or for a finished demo.
        _set_info(rt, {"demo": "generating"})
        generate(rt, spec, progress)
        if create_demo_officers(rt) and progress:
            progress("officers: alice (analyst), sam (senior), ada (admin)")
        screened = screen_demo(rt, spec.anchor)
        if progress:
            progress(f"withdrawals: {screened.screened} screened, {screened.held} held "
                     "for review")
        info = {"demo": "true", "seed": str(spec.seed), "accounts": str(spec.accounts),
                "days": str(spec.days), "anchor": spec.anchor.isoformat()}
        _set_info(rt, info)
        counts, scenarios = summarise(rt)
        return DemoResult(False, info, counts, scenarios, time.monotonic() - began)
    finally:
        rt.engine.dispose()

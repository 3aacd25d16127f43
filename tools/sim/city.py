"""Hạ Long as the simulator sees it: places, people and the script of a run. No I/O.

Everything comes from one seeded random generator, so the same seed gives the same
merchants, couriers, orders and arrival times.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from shared.contract import FAIL_REASONS as CONTRACT_FAIL_REASONS
from shared.geo import metres_per_degree
from shared.maps import NEIGHBOURHOODS  # the city's neighbourhoods, as the service area draws them

STREETS = [
    "Lê Thánh Tông",
    "Hạ Long",
    "Trần Hưng Đạo",
    "Nguyễn Văn Cừ",
    "Lê Lợi",
    "Cao Thắng",
    "Giếng Đáy",
    "Hoàng Quốc Việt",
    "Kênh Liêm",
    "Vườn Đào",
    "Anh Đào",
    "Hải Long",
]
FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi", "Đỗ", "Ngô", "Dương", "Lý"]
MIDDLE = ["Văn", "Thị", "Minh", "Đức", "Thu", "Ngọc", "Hữu", "Thanh"]
GIVEN = [
    "An",
    "Bình",
    "Châu",
    "Dũng",
    "Hà",
    "Hùng",
    "Lan",
    "Linh",
    "Minh",
    "Nam",
    "Phương",
    "Quân",
    "Thảo",
    "Trang",
    "Tuấn",
    "Vy",
    "Hải",
    "Long",
    "Mai",
    "Sơn",
]
SHOPS = [
    "Tạp hóa {n}",
    "Hải sản Bãi Cháy {n}",
    "Chả mực {n}",
    "Thời trang {n}",
    "Điện thoại {n}",
    "Nhà sách {n}",
    "Mỹ phẩm {n}",
    "Bánh cuốn {n}",
    "Đồ gia dụng {n}",
    "Trà sữa {n}",
]
GOODS = [
    "Chả mực 1kg",
    "Áo khoác",
    "Sách giáo khoa",
    "Ốp lưng điện thoại",
    "Sữa rửa mặt",
    "Hộp bánh cuốn",
    "Nồi cơm điện",
    "Trà sữa x4",
    "Giày thể thao",
    "Sạc dự phòng",
]
MOBILE_PREFIXES = ["091", "094", "098", "097", "090", "093", "086", "088", "035", "096"]
VEHICLES = [("motorbike", 0.8), ("bicycle", 0.1), ("car", 0.07), ("van", 0.03)]
FAIL_REASONS = list(CONTRACT_FAIL_REASONS)  # rng.choice over the contract's list, in its order


@dataclass(frozen=True)
class Place:
    name: str
    phone: str
    address: str
    lat: float
    lng: float

    def as_json(self) -> dict:
        return {"name": self.name, "phone": self.phone, "address": self.address, "lat": self.lat, "lng": self.lng}


@dataclass(frozen=True)
class MerchantPlan:
    name: str
    phone: str
    shop: Place


@dataclass(frozen=True)
class CourierPlan:
    name: str
    phone: str
    vehicle: str
    lat: float
    lng: float
    accept_probability: float
    fail_probability: float
    seed: int  # the courier's own decisions


@dataclass(frozen=True)
class OrderPlan:
    at_s: float  # city seconds after the start
    merchant: int
    dropoff: Place
    weight_grams: int
    description: str
    cod_amount_vnd: int
    followed: bool  # a customer watches it live
    cancel_after_s: float | None  # the merchant cancels it this long after placing it


@dataclass
class Script:
    merchants: list[MerchantPlan] = field(default_factory=list)
    couriers: list[CourierPlan] = field(default_factory=list)
    orders: list[OrderPlan] = field(default_factory=list)


def person(rng: random.Random) -> str:
    return f"{rng.choice(FAMILY)} {rng.choice(MIDDLE)} {rng.choice(GIVEN)}"


def phone(rng: random.Random) -> str:
    return f"{rng.choice(MOBILE_PREFIXES)}{rng.randrange(1_000_000, 9_999_999):07d}"


def near(rng: random.Random, lat: float, lng: float, max_m: float, min_m: float = 0) -> tuple[float, float]:
    distance = rng.uniform(min_m, max_m)
    bearing = rng.uniform(0, 2 * math.pi)
    per_lat, per_lng = metres_per_degree(lat)
    dlat = distance * math.cos(bearing) / per_lat
    dlng = distance * math.sin(bearing) / per_lng
    return round(lat + dlat, 6), round(lng + dlng, 6)


def address(rng: random.Random, neighbourhood: str) -> str:
    return f"Số {rng.randrange(1, 300)} {rng.choice(STREETS)}, {neighbourhood}, Hạ Long, Quảng Ninh"


def build_script(
    *,
    seed: int,
    merchants: int,
    couriers: int,
    rate_per_s: float,
    duration_s: float,
    follow_share: float = 0.3,
    cancel_share: float = 0.08,
) -> Script:
    """The whole run, decided up front. Orders arrive as a Poisson process of `rate_per_s`."""
    rng = random.Random(seed)
    script = Script()
    hoods = list(NEIGHBOURHOODS.items())
    for i in range(merchants):
        hood, (lat, lng) = hoods[i % len(hoods)]
        owner = person(rng)
        slat, slng = near(rng, lat, lng, 600)
        shop = Place(SHOPS[i % len(SHOPS)].format(n=owner.split()[-1]), phone(rng), address(rng, hood), slat, slng)
        script.merchants.append(MerchantPlan(shop.name, shop.phone, shop))
    for _ in range(couriers):
        hood, (lat, lng) = hoods[rng.randrange(len(hoods))]
        clat, clng = near(rng, lat, lng, 1500)
        vehicle = rng.choices([v for v, _ in VEHICLES], [w for _, w in VEHICLES])[0]
        script.couriers.append(
            CourierPlan(
                person(rng),
                phone(rng),
                vehicle,
                clat,
                clng,
                accept_probability=rng.uniform(0.8, 0.97),
                fail_probability=rng.uniform(0.04, 0.12),
                seed=rng.randrange(2**31),
            )
        )
    t = 0.0
    while True:
        t += rng.expovariate(rate_per_s)
        if t >= duration_s:
            break
        m = rng.randrange(merchants)
        shop = script.merchants[m].shop
        hood = min(
            NEIGHBOURHOODS,
            key=lambda h: (NEIGHBOURHOODS[h][0] - shop.lat) ** 2 + (NEIGHBOURHOODS[h][1] - shop.lng) ** 2,
        )
        dlat, dlng = near(rng, shop.lat, shop.lng, 3500, 300)
        cod = rng.choice([0, 0, rng.randrange(50, 2000) * 1000])
        script.orders.append(
            OrderPlan(
                at_s=t,
                merchant=m,
                dropoff=Place(person(rng), phone(rng), address(rng, hood), dlat, dlng),
                weight_grams=rng.randrange(100, 8000),
                description=rng.choice(GOODS),
                cod_amount_vnd=cod,
                followed=rng.random() < follow_share,
                cancel_after_s=rng.uniform(2, 60) if rng.random() < cancel_share else None,
            )
        )
    return script

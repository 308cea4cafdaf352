"""Weighted name pools reflecting UK diversity, plus nickname and transliteration variants.

Pools are written in rough popularity order and weighted with a Zipf-like curve, so common
names ("Mohammed Khan", "Jack Smith", "Olivia Jones") recur and namesakes occur naturally, as
they do in real agency data. All names here are common given or family names, not real people.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect
from dataclasses import dataclass
from functools import cache
from itertools import accumulate
from random import Random


class WeightedPool:
    """A fixed list of strings with precomputed cumulative weights: one bisect per draw."""

    __slots__ = ("cum", "items", "total")

    def __init__(self, items: list[str], weights: list[float]) -> None:
        if not items or len(items) != len(weights):
            raise ValueError("a pool needs one weight per item")
        self.items = items
        self.cum = list(accumulate(weights))
        self.total = self.cum[-1]

    @classmethod
    def zipf(cls, text: str, exponent: float = 0.8) -> WeightedPool:
        """Items in popularity order; weight 1/rank**exponent gives a realistic long tail."""
        items = text.split()
        return cls(items, [1.0 / (rank**exponent) for rank in range(1, len(items) + 1)])

    def pick(self, rng: Random) -> str:
        return self.items[bisect(self.cum, rng.random() * self.total)]


@dataclass(frozen=True, slots=True)
class Origin:
    """One naming tradition: sex-specific given names (young/older generation) and surnames."""

    name: str
    weight: float
    male_young: WeightedPool
    male_old: WeightedPool
    female_young: WeightedPool
    female_old: WeightedPool
    family: WeightedPool
    middle_rate: float
    # Share of households of this origin that moved in the last few years; recent migrant
    # communities move more often, which drives the postcode disagreement seen in linkage.
    move_rate: float
    # Multiplier on name-order swaps: family-name-first traditions are swapped more often.
    order_swap_factor: float = 1.0


_TAIL_HEADS = [
    "Ash",
    "Brad",
    "Whit",
    "Thorn",
    "Ship",
    "Hol",
    "Brom",
    "Cal",
    "Hart",
    "Wood",
    "Mar",
    "Ather",
    "Black",
    "Bramp",
    "Broad",
    "Cran",
    "Dun",
    "Ep",
    "Fen",
    "Gold",
    "Hamp",
    "Hal",
    "Kings",
    "Lang",
    "Mid",
    "North",
    "Oak",
    "Pen",
    "Red",
    "Ros",
    "Sal",
    "Stan",
    "Sut",
    "Wal",
    "West",
    "Wim",
]
_TAIL_ENDS = [
    "worth",
    "ley",
    "field",
    "ton",
    "ham",
    "well",
    "by",
    "wood",
    "stead",
    "ford",
    "croft",
    "shaw",
    "bury",
    "wick",
    "hurst",
]


def _english_tail() -> tuple[str, ...]:
    """Toponymic surnames (Ashworth, Bradley, Thornton...) for the long tail of rare names."""
    return tuple(h + e for h in _TAIL_HEADS for e in _TAIL_ENDS)


def _origin(
    name: str,
    weight: float,
    male: str,
    female: str,
    family: str,
    *,
    male_old: str | None = None,
    female_old: str | None = None,
    middle_rate: float = 0.3,
    move_rate: float = 0.35,
    order_swap_factor: float = 1.0,
    family_exponent: float = 0.7,
    male_exponent: float = 0.55,
    family_tail: tuple[str, ...] = (),
) -> Origin:
    my = WeightedPool.zipf(male, male_exponent)
    fy = WeightedPool.zipf(female, 0.55)
    fam = WeightedPool.zipf(family, family_exponent)
    if family_tail:
        # A long tail of rarer surnames carrying ~35% of draws, as in real surname frequencies.
        share = fam.total * 0.35 / 0.65 / len(family_tail)
        fam = WeightedPool(
            fam.items + list(family_tail),
            [1.0 / r**family_exponent for r in range(1, len(fam.items) + 1)]
            + [share] * len(family_tail),
        )
    return Origin(
        name=name,
        weight=weight,
        male_young=my,
        male_old=WeightedPool.zipf(male_old, 0.55) if male_old else my,
        female_young=fy,
        female_old=WeightedPool.zipf(female_old, 0.55) if female_old else fy,
        family=fam,
        middle_rate=middle_rate,
        move_rate=move_rate,
        order_swap_factor=order_swap_factor,
    )


ORIGINS: tuple[Origin, ...] = (
    _origin(
        "english",
        58.0,
        male="""Jack Oliver Harry George Noah Charlie Jacob Thomas Oscar William James Leo Alfie
        Henry Joshua Freddie Archie Ethan Isaac Alexander Joseph Edward Samuel Max Daniel Arthur
        Lucas Mason Theo Harrison Logan Benjamin Dylan Adam Riley Finley Sebastian Toby Jake
        Ryan Luke Matthew Tommy Reuben Harvey Louie Jenson Teddy Ronnie Frankie Albie Kai Tyler
        Bobby Elliot Jude Rory Stanley Ellis Hugo Zachary Caleb Finn Aaron Liam Connor Jayden""",
        female="""Olivia Amelia Isla Ava Mia Ivy Lily Isabella Rosie Sophia Grace Willow Freya
        Florence Emily Ella Poppy Evie Elsie Charlotte Evelyn Sienna Sofia Daisy Phoebe Sophie
        Alice Harper Matilda Ruby Emilia Maya Millie Isabelle Eva Chloe Jessica Lucy Holly
        Scarlett Imogen Erin Ellie Layla Harriet Bella Megan Hannah Amber Lola Maisie Esme
        Lottie Molly Niamh Darcie Violet Summer Eleanor Georgia Paige Jasmine Katie Lacey""",
        male_old="""David John Paul Mark Michael Andrew Richard Robert Peter Stephen Christopher
        James Gary Darren Lee Craig Wayne Dean Carl Simon Ian Neil Kevin Anthony Steven Martin
        Brian Keith Colin Alan Derek Roy Kenneth Ronald Dennis Terence Barry Graham Trevor
        Leonard Albert Frank Harold Stanley Reginald Walter Geoffrey Philip Nigel Jason Daniel
        Matthew Jonathan Adam Scott Shaun Ricky Nathan Thomas William George Stuart Russell""",
        female_old="""Sarah Claire Emma Nicola Lisa Joanne Michelle Helen Rachel Karen Julie
        Louise Amanda Kelly Donna Samantha Susan Deborah Tracey Angela Gemma Laura Victoria
        Rebecca Elizabeth Jennifer Linda Patricia Margaret Carol Christine Janet Jean Barbara
        Sandra Pauline Maureen Doreen Joan Dorothy Elsie Irene Sheila Valerie Brenda Joyce
        Kathleen Hayley Jodie Stacey Leanne Kirsty Zoe Natalie Charlotte Katie Jade Danielle""",
        family="""Smith Jones Williams Taylor Brown Davies Evans Wilson Thomas Johnson Roberts
        Robinson Thompson Wright Walker White Edwards Hughes Green Hall Lewis Harris Clarke
        Jackson Wood Turner Martin Cooper Hill Ward Morris Moore Clark Lee King Baker
        Harrison Morgan Allen James Scott Phillips Watson Davis Parker Price Bennett Young
        Griffiths Mitchell Kelly Cook Carter Richardson Bailey Collins Bell Shaw Murphy Miller
        Cox Richards Marshall Anderson Simpson Ellis Adams Wilkinson Foster
        Chapman Powell Webb Rogers Gray Mason Hunt Campbell Matthews Owen Palmer
        Holmes Mills Barnes Knight Lloyd Butler Russell Barker Fisher Stevens Jenkins Murray
        Dixon Harvey Graham Pearson Fletcher Walsh Gibson Howard Andrews Stewart
        Elliott Reynolds Saunders Payne Fox Ford Pearce Day Brooks West Lawrence Cole Atkinson
        Bradley Spencer Gill Dawson Ball Burton O'Brien Watts Rose Booth Perry Ryan Grant Wells
        Armstrong Francis Rees Hayes Hart Hudson Newman Barrett Webster Hunter Gregory Carr
        Lowe Page Marsh Riley Dunn Woods Parsons Berry Stone Reid Holland Hawkins Harding Porter
        Robertson Newton Oliver Reed Kennedy Williamson Bird Gardner Dean Lane Cooke
        Bates Henderson Parry Burgess Bishop Walton Burns Nicholson Shepherd Ross Cross Long
        Freeman Warren Nicholls Hamilton Byrne Sutton McDonald Yates Hodgson Robson Curtis
        Hopkins O'Connor Harper Coleman Watkins Moss McCarthy Chambers Griffin Sharp Hardy
        Wheeler Potter Osborne Johnston Gordon Doyle Wallace George Jordan Hutchinson Rowe
        Burke May Pritchard Gilbert Willis Higgins Read Miles Stevenson Stephenson Hammond
        Arnold Buckley Walters Hewitt Barber Nelson Slater Austin Sullivan Whitehead Mann Frost
        Lambert Stephens Blake Lynch Goodwin Barton Woodward Thomson Cunningham Quinn""",
        family_exponent=0.6,
        family_tail=_english_tail(),
        middle_rate=0.35,
        move_rate=0.3,
    ),
    _origin(
        "scottish_welsh",
        7.0,
        male="""Jack Lewis Harris Callum Rhys Dylan Owen Finlay Cameron Ewan Lachlan Euan Jac
        Alfie Harry Logan Rory Angus Iwan Osian Cai Gethin Ruaridh Fraser Murray Kyle Aled""",
        female="""Isla Olivia Freya Ella Eilidh Ffion Seren Cerys Megan Carys Mali Catrin Skye
        Amelia Eva Millie Ava Rhiannon Sian Kirsty Morag Iona Mairi Bethan Eleri Lowri Elin""",
        male_old="""David John Gareth Dafydd Huw Iain Alistair Gordon Duncan Hamish Alan Colin
        Graham Stuart Neil Ewan Rhodri Dai Emyr Gwyn Alun Robert James William Andrew Kenneth""",
        female_old="""Fiona Catriona Elaine Morag Shona Gwen Nia Sian Angharad Eirlys Moira
        Isobel Jean Margaret Agnes Elspeth Karen Lorraine Julie Linda Alison Heather Rhian""",
        family="""Jones Williams Davies Evans Thomas Roberts Hughes Lewis Morgan Griffiths Smith
        Wilson Campbell Stewart Thomson Robertson Anderson Macdonald Scott Reid Murray Taylor
        Clark Ross Walker Paterson Young Watson Morrison Mitchell Fraser Rees Price Jenkins
        Owen Powell Phillips Lloyd Parry Pritchard Llewellyn Bowen Howells Pugh MacLeod Grant
        McKenzie Sinclair Munro Kerr Ferguson Cameron Hamilton Johnston Gray Henderson""",
        move_rate=0.3,
    ),
    _origin(
        "irish",
        4.5,
        male="""Jack James Noah Conor Sean Cian Oisin Patrick Liam Daniel Darragh Tadhg Fionn
        Ronan Cillian Rory Eoin Ciaran Niall Declan Michael Aidan Callum Shane Kieran Padraig""",
        female="""Grace Emily Fiadh Sophie Ava Amelia Ella Aoife Saoirse Niamh Roisin Siobhan
        Caoimhe Ciara Orla Sinead Aisling Clodagh Molly Erin Mary Bridget Maeve Eimear""",
        male_old="""Patrick Michael John Sean Thomas Brendan Dermot Kevin Gerard Francis Liam
        Martin Declan Desmond Eamon Seamus Joseph Brian Noel Colm Paul Dominic Cormac""",
        female_old="""Mary Bridget Kathleen Margaret Siobhan Maureen Eileen Theresa Catherine
        Noreen Sinead Deirdre Anne Ann Geraldine Bernadette Philomena Roisin Majella Colette""",
        family="""Murphy Kelly O'Sullivan Walsh Smith O'Brien Byrne Ryan O'Connor O'Neill
        O'Reilly Doyle McCarthy Gallagher O'Doherty Kennedy Lynch Murray Quinn Moore McLaughlin
        Carroll Connolly Daly O'Connell Wilson Dunne Brennan Burke Collins Campbell Clarke
        Johnston Hughes O'Farrell Fitzgerald Brown Martin Maguire Nolan Flynn Thompson Callaghan
        O'Donnell Duffy Mahony Boyle Healy Shea White Sweeney Hayes Kavanagh Power McGrath""",
        move_rate=0.3,
    ),
    _origin(
        "pakistani",
        4.0,
        male="""Mohammed Muhammad Ibrahim Yusuf Musa Ali Hamza Ayaan Zayn Adam Abdullah Umar
        Hassan Bilal Imran Usman Zain Haris Rayyan Ahmed Faisal Kashif Tariq Shahid Zubair
        Asif Arfan Naveed Sajid Waqas Adeel Shoaib Amir Junaid Kamran Nadeem Irfan Rizwan""",
        female="""Maryam Aisha Fatima Zainab Hafsa Khadija Amina Inaaya Safa Hiba Eshal Noor
        Aleena Alishba Iqra Mehwish Sana Samina Nazia Shazia Rubina Nasreen Saima Bushra
        Farzana Shabana Rukhsana Parveen Yasmin Amna Ayesha Hina Sadia Anum Kiran""",
        family="""Khan Hussain Ahmed Ali Akhtar Iqbal Mahmood Shah Rehman Bibi Begum Aslam
        Rashid Butt Malik Mirza Hussein Javed Nawaz Riaz Qureshi Anwar Sadiq Saleem Yousaf
        Raza Abbas Bashir Chaudhry Arshad Hanif Zaman Latif Younis Siddiqui Sharif Mughal""",
        family_exponent=1.0,
        male_exponent=0.9,
        middle_rate=0.25,
        move_rate=0.35,
    ),
    _origin(
        "indian",
        3.0,
        male="""Arjun Aarav Vihaan Rohan Ishaan Krish Dev Aryan Kabir Reyansh Harjit Gurpreet
        Rajesh Sanjay Vijay Amit Sunil Anil Ravi Manoj Deepak Ajay Hardeep Jaspal Kulwinder
        Sukhdev Rakesh Suresh Mahesh Pritpal Navdeep Ranjit Vikram Nikhil Kiran Jatinder""",
        female="""Anaya Priya Aanya Diya Saanvi Kavya Simran Navneet Jaspreet Harpreet Manpreet
        Sunita Anita Geeta Neha Pooja Asha Meena Rupinder Kamaljit Sukhwinder Parminder Nisha
        Sarita Ritu Shreya Riya Isha Kiran Lakshmi Divya Amrit Gurdeep""",
        family="""Patel Singh Kaur Sharma Kumar Gill Sandhu Sidhu Shah Mistry Parmar Chauhan
        Dhillon Sohal Bains Johal Sangha Mehta Gupta Joshi Rana Thakkar Desai Solanki Chopra
        Verma Bhatt Kapoor Malhotra Rai Grewal Atwal Nair Pillai Reddy Lal""",
        family_exponent=1.1,
        middle_rate=0.15,
        move_rate=0.3,
    ),
    _origin(
        "bangladeshi",
        1.5,
        male="""Mohammed Abdul Mohammad Ayaan Rayan Ibrahim Yusuf Sultan Jamal Shahid Rahim
        Kamal Faruk Shafiq Rashid Habib Anwar Nazrul Mizanur Mohibur Shamim Abdur Saiful
        Harun Foysal Rubel Sohel Jahangir Abu Hasan""",
        female="""Fatima Ayesha Sumaiya Tahmina Nusrat Rahima Halima Shirin Salma Rokeya Jasmin
        Shamima Rumana Farhana Sabina Sultana Taslima Nasima Nazma Shahana Sadia Ruksana""",
        family="""Begum Miah Uddin Rahman Ahmed Islam Hussain Khatun Ali Hoque Chowdhury Alam
        Hassan Karim Sarkar Bibi Akter Rashid Haque Ullah Hossain Siddique Kabir Talukdar""",
        family_exponent=1.1,
        male_exponent=0.9,
        middle_rate=0.2,
        move_rate=0.35,
    ),
    _origin(
        "polish",
        2.5,
        male="""Jakub Jan Antoni Szymon Filip Kacper Mateusz Michał Bartosz Wojciech Piotr
        Krzysztof Tomasz Paweł Łukasz Marcin Adam Dawid Kamil Grzegorz Andrzej Marek Rafał
        Damian Sebastian Dominik Przemysław Artur Jarosław""",
        female="""Zuzanna Julia Maja Zofia Hanna Lena Alicja Oliwia Natalia Wiktoria Aleksandra
        Agnieszka Katarzyna Anna Magdalena Joanna Monika Małgorzata Ewa Karolina Justyna Marta
        Dorota Beata Paulina Sylwia Izabela Kinga Weronika""",
        family="""Nowak Kowalski Kowalska Wiśniewski Wiśniewska Wójcik Kowalczyk Kamiński
        Kamińska Lewandowski Lewandowska Zieliński Szymański Woźniak Dąbrowski Kozłowski
        Jankowski Mazur Kwiatkowski Krawczyk Piotrowski Grabowski Nowakowski Pawłowski Michalski
        Król Wieczorek Jabłoński Wróbel Majewski Olszewski Stępień""",
        family_exponent=0.9,
        middle_rate=0.05,
        move_rate=0.5,
    ),
    _origin(
        "romanian",
        1.5,
        male="""Andrei Alexandru Ionuț Mihai Stefan Gabriel Florin Marius Adrian Cristian Ion
        Vasile Constantin Daniel Bogdan Razvan Sorin Catalin Gheorghe Nicolae Cosmin Ovidiu
        Darius David Luca Matei""",
        female="""Maria Elena Ioana Andreea Alexandra Mihaela Gabriela Cristina Daniela Ana
        Roxana Florentina Nicoleta Simona Raluca Bianca Alina Denisa Larisa Sofia Ecaterina""",
        family="""Popescu Ionescu Popa Pop Radu Dumitru Stan Stoica Gheorghe Matei Ciobanu Rusu
        Munteanu Florea Constantin Lungu Dinu Marin Tudor Moldovan Barbu Nistor Oprea Dobre
        Ene Sandu Toma Cristea""",
        family_exponent=0.9,
        middle_rate=0.15,
        move_rate=0.55,
    ),
    _origin(
        "west_african",
        2.2,
        male="""David Daniel Samuel Emmanuel Joshua Michael Olumide Oluwaseun Chinedu Chukwuemeka
        Kwame Kofi Kwabena Kojo Yaw Ayodele Babatunde Tunde Segun Adebayo Obinna Ifeanyi Emeka
        Nnamdi Ebuka Tobi Femi Dayo Kayode Jide Kelechi Uche Nana Kwaku Ekow""",
        female="""Grace Blessing Esther Favour Precious Deborah Adaeze Chiamaka Ngozi Funmilayo
        Folake Adaora Ifeoma Abimbola Oluwatoyin Temitope Yetunde Bisola Ama Akosua Abena Efua
        Adwoa Afua Esi Nana Comfort Patience Joy Mercy Ruth Princess Nneka""",
        family="""Okafor Adeyemi Okoro Mensah Owusu Boateng Asante Adebayo Oyelaran Ogunleye
        Okonkwo Eze Nwosu Obi Osei Appiah Agyeman Darko Addo Bello Adewale Olaniyan Afolabi
        Akinola Ibrahim Balogun Oladipo Ogunbiyi Okeke Chukwu Nwachukwu Ansah Amoah Acheampong
        Oduya Ajayi Adeleke Fashola Oyewole Ofori Danso""",
        family_exponent=0.7,
        middle_rate=0.6,
        move_rate=0.45,
    ),
    _origin(
        "somali",
        0.8,
        male="""Mohamed Abdi Ahmed Ali Hassan Abdirahman Abdullahi Omar Yusuf Ibrahim Mustafa
        Abdikarim Abdiaziz Said Farah Jama Liban Hamza Ayub Bashir Mahad Khalid""",
        female="""Fatima Amina Hodan Hibo Sahra Ayan Hawa Faduma Maryan Ifrah Nimco Sagal Asha
        Halima Khadra Ubah Deeqa Hamdi Warsan Muna Layla Nasra""",
        family="""Mohamed Ali Ahmed Hassan Abdi Omar Hussein Farah Ibrahim Jama Warsame Osman
        Yusuf Abdullahi Nur Mohamud Aden Egal Dahir Hersi Duale Elmi Guled Isse""",
        family_exponent=1.0,
        male_exponent=0.9,
        middle_rate=0.1,
        move_rate=0.55,
    ),
    _origin(
        "caribbean",
        1.8,
        male="""Tyrone Marcus Jerome Dwayne Leon Andre Winston Delroy Clive Errol Trevor Junior
        Kemar Jermaine Jaden Malachi Kai Isaiah Elijah Josiah Tyrese Rashad Darnell Nathaniel""",
        female="""Shanice Tanisha Keisha Janelle Jada Aaliyah Imani Shantelle Marcia Beverley
        Hyacinth Sonia Jacqueline Paulette Yvonne Maxine Charmaine Simone Destiny Nia Kezia""",
        male_old="""Winston Delroy Clive Errol Trevor Lloyd Everton Desmond Leroy Carlton Neville
        Lincoln Vernon Roy Ainsley Cecil Linton Wesley Dennis Leon""",
        female_old="""Hyacinth Marcia Beverley Paulette Yvonne Pauline Merle Gloria Cynthia
        Claudette Sonia Jacqueline Marlene Joy Icilda Myrtle Angela Janet""",
        family="""Campbell Brown Williams Johnson Smith Thomas Clarke Francis James Grant
        Richards Henry Reid Morgan Walker Robinson Lewis Edwards Gordon Bailey Samuels Forbes
        Wright Powell Davis Thompson Stewart Harris McKenzie Anderson Allen Gayle Bennett""",
        middle_rate=0.4,
        move_rate=0.35,
    ),
    _origin(
        "chinese",
        1.0,
        male="""Wei Jun Hao Ming Jian Lei Chen Yi Kai Hong Chi Kin Wing Man Tak Ka Ho Jason Kevin
        Michael Daniel Eric Ryan""",
        female="""Mei Li Xin Yan Ling Hui Jing Ying Xiao Fang Lan Siu Wai Yee Mandy Jenny Amy
        Grace Emily Chloe Vivian""",
        family="""Wang Li Zhang Liu Chen Yang Huang Zhao Wu Zhou Xu Sun Ma Zhu Hu Guo Lin He Gao
        Wong Chan Cheung Lau Leung Ho Lam Tang Ng Cheng""",
        family_exponent=1.0,
        middle_rate=0.1,
        move_rate=0.4,
        order_swap_factor=4.0,
    ),
    _origin(
        "turkish_kurdish",
        0.8,
        male="""Mehmet Mustafa Ahmet Ali Hüseyin Hasan İbrahim Murat Emre Yusuf Ömer Can Deniz
        Serkan Kemal Baran Rojhat Dilan Aram Azad Zana Berkay Burak""",
        female="""Ayşe Fatma Zeynep Elif Emine Hatice Meryem Esra Merve Derya Leyla Rojda
        Berfin Dilan Hevin Nergiz Sevgi Gül Özlem""",
        family="""Yılmaz Kaya Demir Şahin Çelik Yıldız Yıldırım Öztürk Aydın Özdemir Arslan
        Doğan Kılıç Aslan Çetin Kara Koç Kurt Özkan Şimşek Polat Güneş Akın Ekinci""",
        family_exponent=0.9,
        middle_rate=0.05,
        move_rate=0.45,
    ),
    _origin(
        "arabic",
        1.2,
        male="""Mohammed Ahmad Omar Ali Yousef Khaled Ibrahim Mahmoud Hussein Abdullah Karim
        Samir Tariq Nabil Walid Rami Fadi Hamza Adam Zain Yahya Mustafa Sami Bilal""",
        female="""Fatima Maryam Noor Layla Sara Huda Rania Amal Hana Salma Lina Yasmin Reem
        Dina Zahra Nour Aya Rana Mona Jana Malak""",
        family="""Al-Sayed Hassan Hussein Ahmed Ali Mahmoud Ibrahim Saleh Abdullah Khalil Nasser
        Haddad Mansour Youssef Said Othman Kareem Aziz Hamdan Jaber Salem Farouk Rahman""",
        family_exponent=0.9,
        male_exponent=0.9,
        middle_rate=0.3,
        move_rate=0.5,
    ),
)

ORIGIN_INDEX: dict[str, int] = {o.name: i for i, o in enumerate(ORIGINS)}

# Twins are sometimes given deliberately similar-sounding names, the hardest case for linkage.
SIMILAR_TWIN_NAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "F": (
        ("Ava", "Ella"),
        ("Amelia", "Emilia"),
        ("Isla", "Ivy"),
        ("Lily", "Lila"),
        ("Mia", "Maya"),
        ("Sophie", "Sophia"),
        ("Aisha", "Ayesha"),
        ("Hana", "Hiba"),
        ("Zara", "Zahra"),
        ("Ruby", "Rosie"),
        ("Evie", "Ellie"),
    ),
    "M": (
        ("Harry", "Harvey"),
        ("Leo", "Theo"),
        ("Jack", "Jake"),
        ("Hassan", "Hussain"),
        ("Oliver", "Oscar"),
        ("Louie", "Lewis"),
        ("Finley", "Finn"),
        ("Aaron", "Adam"),
        ("Ryan", "Rayyan"),
        ("Kai", "Cai"),
    ),
}

# Spellings of one name seen across agencies: romanisation of Arabic, Bengali, Urdu and
# Somali names, and Slavic/Romanian/Turkish forms with and without diacritics.
_TRANSLITERATION_GROUPS: tuple[str, ...] = (
    "Mohammed Muhammad Mohamed Mohammad Mohamad Muhammed",
    "Ahmed Ahmad Ahmet",
    "Yusuf Yousef Yousuf Yusef",
    "Hussain Hussein Husain Hosain",
    "Hassan Hasan",
    "Abdullah Abdulla Abdallah",
    "Abdullahi Abdilahi",
    "Abdirahman Abdurahman",
    "Omar Umar Omer",
    "Usman Osman Othman",
    "Mahmood Mahmoud Mahmud Mohamud",
    "Rehman Rahman",
    "Fatima Fatimah Fatma Faduma",
    "Aisha Ayesha Aysha",
    "Ayesha Aisha Aysha",
    "Khadija Khadijah Khadeeja",
    "Zainab Zaynab Zeinab",
    "Maryam Mariam Maryan",
    "Amina Aminah Ameena",
    "Noor Nour Nur",
    "Yasmin Yasmine Jasmin",
    "Ibrahim Ebrahim Ibraheem",
    "Mustafa Mostafa Mustapha",
    "Khalid Khaled",
    "Miah Mia Meah",
    "Uddin Udin Ud-Din",
    "Chowdhury Choudhury Chaudhry Choudhry",
    "Qureshi Kureshi Quraishi",
    "Shahid Shahed",
    "Karim Kareem",
    "Aleksandra Alexandra",
    "Katarzyna Katarina",
    "Andrei Andrey",
    "Ionuț Ionut",
    "Zhang Chang",
    "Wang Wong",
    "Chen Chan",
    "Li Lee",
    "Zhou Chow",
    "Wu Ng",
    "Oluwaseun Seun",
)


def _strip_diacritics(text: str) -> str:
    table = str.maketrans({"ł": "l", "Ł": "L", "ı": "i", "İ": "I", "ș": "s", "ț": "t"})
    decomposed = unicodedata.normalize("NFKD", text.translate(table))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@cache
def transliterations() -> dict[str, tuple[str, ...]]:
    """Alternative spellings for each name that has them (sorted, so draws are deterministic)."""
    variants: dict[str, set[str]] = {}
    for group in _TRANSLITERATION_GROUPS:
        names = group.split()
        for name in names:
            variants.setdefault(name, set()).update(n for n in names if n != name)
    for origin in ORIGINS:
        for pool in (
            origin.male_young,
            origin.male_old,
            origin.female_young,
            origin.female_old,
            origin.family,
        ):
            for name in pool.items:
                plain = _strip_diacritics(name)
                if plain != name:
                    variants.setdefault(name, set()).add(plain)
    # One-way: Romanian Gheorghe is often anglicised, but an English George is never Gheorghe.
    variants.setdefault("Gheorghe", set()).add("George")
    return {k: tuple(sorted(v)) for k, v in variants.items()}


# Americanisms and archaic forms from the nickname list that UK agencies would not record.
_UNUSED_NICKNAMES = frozenset(
    {
        "Nollie",
        "Hap",
        "Haps",
        "Dann",
        "Jaap",
        "Lib",
        "Midge",
        "Chuck",
        "Hank",
        "Jem",
        "Thom",
        "Maggy",
        "Margy",
        "Lizzy",
        "Jimmie",
        "Nib",
        "Nibby",
        "Tibbie",
    }
)


@cache
def nicknames() -> dict[str, tuple[str, ...]]:
    """Informal forms of formal given names, from the ``nicknames`` package, loaded once.

    Longer forms are dropped (the package also lists formal names as "nicknames" of their
    short forms, e.g. Ronnie for Aaron), as is any name the pools give the other sex.
    """
    from nicknames import NickNamer  # noqa: PLC0415 - only needed when generating

    namer = NickNamer()
    male: set[str] = set()
    female: set[str] = set()
    for origin in ORIGINS:
        for pool in (origin.male_young, origin.male_old):
            male.update(pool.items)
        for pool in (origin.female_young, origin.female_old):
            female.update(pool.items)
    out: dict[str, tuple[str, ...]] = {}
    for name in sorted(male | female):
        other_sex = (female - male) if name in male else (male - female)
        found = namer.nicknames_of(name.lower())
        usable = sorted(
            nick
            for nick in (n.title() for n in found if n.isalpha())
            if 3 <= len(nick) <= len(name)
            and nick != name
            and nick not in other_sex
            and nick not in _UNUSED_NICKNAMES
        )
        if usable:
            out[name] = tuple(usable)
    return out

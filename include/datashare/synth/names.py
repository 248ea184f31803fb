"""Name, street and ZIP vocabularies for synthetic students and staff.

Common given names and surnames (public frequency lists), grouped loosely so that a school's
synthetic roster looks like Boston's. Nothing here is a real student's record.
"""

from __future__ import annotations

__all__ = [
    "FIRST_NAMES",
    "LANGUAGES",
    "LAST_NAMES",
    "STREETS",
    "ZIP_NEIGHBOURHOODS",
    "ZIP_WEIGHTS",
]

# fmt: off
FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "F": (
        "Olivia", "Emma", "Ava", "Sophia", "Isabella", "Mia", "Amelia", "Harper", "Evelyn",
        "Abigail", "Emily", "Ella", "Elizabeth", "Camila", "Luna", "Sofia", "Avery", "Mila",
        "Aria", "Scarlett", "Penelope", "Layla", "Chloe", "Victoria", "Madison", "Eleanor",
        "Grace", "Nora", "Riley", "Zoey", "Hannah", "Hazel", "Lily", "Ellie", "Violet", "Lillian",
        "Zoe", "Stella", "Aurora", "Natalie", "Emilia", "Everly", "Leah", "Aubrey", "Willow",
        "Addison", "Lucy", "Audrey", "Bella", "Nevaeh", "Valentina", "Ximena", "Genesis",
        "Daniela", "Valeria", "Nayeli", "Jasmine", "Aaliyah", "Imani", "Kiara", "Destiny", "Amara",
        "Nia", "Zuri", "Fatima", "Mariam", "Linh", "Mai", "Mei", "Yuna", "Anh", "Priya", "Ananya",
        "Esperanza", "Guadalupe", "Yasmin", "Naomi", "Ruth", "Tatiana", "Fabiola", "Nadege",
        "Widlene", "Djenaba", "Keyla",
    ),
    "M": (
        "Liam", "Noah", "Oliver", "Elijah", "James", "William", "Benjamin", "Lucas", "Henry",
        "Theodore", "Jack", "Levi", "Alexander", "Jackson", "Mateo", "Daniel", "Michael", "Mason",
        "Sebastian", "Ethan", "Logan", "Owen", "Samuel", "Jacob", "Asher", "Aiden", "John",
        "Joseph", "Wyatt", "David", "Leo", "Luke", "Julian", "Hudson", "Grayson", "Matthew",
        "Ezra", "Gabriel", "Carter", "Isaac", "Jayden", "Luca", "Anthony", "Dylan", "Lincoln",
        "Thomas", "Maverick", "Elias", "Josiah", "Charles", "Santiago", "Diego", "Angel", "Carlos",
        "Luis", "Jose", "Juan", "Miguel", "Jeremiah", "Malik", "Darius", "Jamal", "Andre",
        "Marcus", "Tyrone", "Kofi", "Kwame", "Omar", "Yusuf", "Ahmed", "Minh", "Huy", "Wei", "Jun",
        "Arjun", "Rohan", "Jean", "Pierre", "Wilson", "Stanley", "Junior", "Edson", "Kelvin",
        "Bryan",
    ),
    "N": (
        "Alex", "Jordan", "Taylor", "Morgan", "Riley", "Casey", "Jamie", "Quinn", "Avery", "Rowan",
    ),
}

LAST_NAMES: dict[str, tuple[str, ...]] = {
    "AA": (
        "Johnson", "Williams", "Brown", "Jones", "Jackson", "Davis", "Harris", "Robinson",
        "Thomas", "Walker", "Washington", "Jefferson", "Coleman", "Banks", "Joseph", "Pierre",
        "Jean-Baptiste", "Charles", "Louis", "Francois", "Toussaint", "Mensah", "Okafor", "Diallo",
        "Mohamed", "Abdi", "Hassan", "Gomes", "Andrade", "Fernandes", "Monteiro", "Barros",
        "Tavares", "Pina", "Lopes", "Semedo", "Bryant", "Grant", "Greene", "Simmons",
    ),
    "HL": (
        "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Perez", "Sanchez", "Ramirez",
        "Torres", "Flores", "Rivera", "Gomez", "Diaz", "Cruz", "Reyes", "Morales", "Ortiz",
        "Gutierrez", "Chavez", "Ramos", "Vasquez", "Castillo", "Jimenez", "Moreno", "Romero",
        "Herrera", "Medina", "Aguilar", "Vargas", "Guzman", "Mendez", "Santana", "Peña", "Rosario",
        "Batista", "Nunez", "Cabrera", "Polanco", "Almonte", "Figueroa",
    ),
    "AS": (
        "Nguyen", "Tran", "Le", "Pham", "Huynh", "Vo", "Chen", "Wang", "Li", "Zhang", "Liu",
        "Huang", "Lin", "Wong", "Chan", "Lee", "Kim", "Park", "Patel", "Shah", "Singh", "Kumar",
        "Das", "Rahman", "Ahmed", "Chowdhury", "Tanaka", "Sato", "Lam", "Ho",
    ),
    "WH": (
        "Smith", "Murphy", "Sullivan", "O'Brien", "Kelly", "Walsh", "McCarthy", "Ryan", "Doherty",
        "Flaherty", "Lynch", "Kennedy", "Fitzgerald", "Connolly", "Russo", "Rossi", "Romano",
        "DeLuca", "Costa", "Silva", "Santos", "Miller", "Anderson", "Taylor", "Moore", "Clark",
        "Lewis", "Young", "Allen", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson",
        "Hill", "Campbell", "Mitchell", "Roberts",
    ),
}
LAST_NAMES["NA"] = LAST_NAMES["WH"][:20] + LAST_NAMES["HL"][:10]
LAST_NAMES["PI"] = (*LAST_NAMES["AS"][:20], "Kealoha", "Kahale", "Fonoti", "Tupou", "Faleolo")
LAST_NAMES["MR"] = LAST_NAMES["AA"][:15] + LAST_NAMES["WH"][:15] + LAST_NAMES["HL"][:10]

# First languages other than English, by race/ethnicity group (Boston's largest language groups).
LANGUAGES: dict[str, tuple[tuple[str, float], ...]] = {
    "HL": (("Spanish", 0.93), ("Portuguese", 0.04), ("Other", 0.03)),
    "AA": (("Haitian Creole", 0.38), ("Cape Verdean Creole", 0.3), ("Somali", 0.12),
           ("French", 0.08), ("Arabic", 0.07), ("Other", 0.05)),
    "AS": (("Vietnamese", 0.35), ("Chinese", 0.4), ("Bengali", 0.1), ("Other", 0.15)),
    "WH": (("Portuguese", 0.3), ("Arabic", 0.2), ("Russian", 0.15), ("Albanian", 0.1),
           ("Other", 0.25)),
    "NA": (("Spanish", 0.7), ("Other", 0.3)),
    "PI": (("Other", 1.0),),
    "MR": (("Spanish", 0.5), ("Portuguese", 0.2), ("Other", 0.3)),
}

ZIP_NEIGHBOURHOODS: dict[str, str] = {
    "02108": "Beacon Hill", "02109": "Downtown", "02110": "Downtown", "02111": "Chinatown",
    "02113": "North End", "02114": "West End", "02115": "Fenway", "02116": "Back Bay",
    "02118": "South End", "02119": "Roxbury", "02120": "Mission Hill", "02121": "Dorchester",
    "02122": "Dorchester", "02124": "Dorchester", "02125": "Dorchester", "02126": "Mattapan",
    "02127": "South Boston", "02128": "East Boston", "02129": "Charlestown",
    "02130": "Jamaica Plain", "02131": "Roslindale", "02132": "West Roxbury",
    "02134": "Allston", "02135": "Brighton", "02136": "Hyde Park", "02199": "Back Bay",
    "02210": "South Boston", "02215": "Fenway",
}
# Relative number of school-age residents (rough shares of Boston's school-age population).
ZIP_WEIGHTS: dict[str, float] = {
    "02108": 0.2, "02109": 0.1, "02110": 0.1, "02111": 0.8, "02113": 0.3, "02114": 0.5,
    "02115": 0.8, "02116": 0.8, "02118": 3.0, "02119": 8.0, "02120": 2.0, "02121": 8.0,
    "02122": 5.0, "02124": 12.0, "02125": 7.0, "02126": 7.0, "02127": 3.0, "02128": 9.0,
    "02129": 1.5, "02130": 4.5, "02131": 4.0, "02132": 2.5, "02134": 1.5, "02135": 3.0,
    "02136": 8.0, "02199": 0.05, "02210": 0.2, "02215": 0.4,
}

STREETS: tuple[str, ...] = (
    "Blue Hill Ave", "Washington St", "Dorchester Ave", "Columbia Rd", "Warren St",
    "Centre St", "Tremont St", "Massachusetts Ave", "Hyde Park Ave", "River St",
    "Bennington St", "Meridian St", "Saratoga St", "Broadway", "Geneva Ave", "Bowdoin St",
    "Talbot Ave", "Norfolk St", "Cummins Hwy", "American Legion Hwy", "Morton St",
    "Harvard St", "Seaver St", "Humboldt Ave", "Dudley St", "Hancock St", "Adams St",
    "Neponset Ave", "Gallivan Blvd", "Beech St", "Belgrade Ave", "Corey St", "South St",
    "Boylston St", "Commonwealth Ave", "Cambridge St", "Market St", "Brighton Ave",
    "Western Ave", "Bunker Hill St", "Medford St", "Hanover St", "Salem St", "Shawmut Ave",
    "Dartmouth St", "Huntington Ave", "Parker Hill Ave", "Heath St", "Lamartine St",
    "Green St",
)
# fmt: on

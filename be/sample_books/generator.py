"""Generate a synthetic SQLite book catalogue in the course's ``book.db`` schema.

Why this exists: the course ships a real ``book.db`` (scraped Douban data,
large, with real cover images) that we must not commit, redistribute or rely
on.  Tests and demos need book data anyway, so they use this generator
instead: it writes a table with exactly the same columns and value styles
(ids as digit strings, price in integer cents, tags as newline-terminated
text, a PNG blob or NULL as picture, ...), deterministically for a seed.

Every field is built from the word lists below, with one Python
``random.Random(seed)`` and nothing time-based, so the same ``--rows`` and
``--seed`` always give byte-identical rows.  About 70% of the books are
Chinese, the rest English.  Table-of-contents words (``CONTENT_WORDS_*``)
appear nowhere else in the vocabulary, so a book's ``content`` contains words
found in no other field of that book, which is handy for search tests.

Usage::

    python -m scripts.gen_books OUT.db --rows 40000 --seed 1

or from Python::

    from be.sample_books import generate, iter_books
    generate("/tmp/books.db", rows=1000, seed=1)

Standard library only. In be/ (not scripts/) because the server's ``--demo``
lists generated books too.
"""

import collections
import os
import random
import sqlite3
import struct
import zlib

from be.sample_books.schema import COLUMNS, CREATE_TABLE


# --------------------------------------------------------------------------
# Vocabulary: Chinese
# --------------------------------------------------------------------------

ZH_ADJ = (
    "沉默的 遥远的 燃烧的 看不见的 最后的 漫长的 温柔的 破碎的 孤独的 明亮的 "
    "秘密的 流动的 失落的 寂静的 永恒的 迷途的 消失的 隐秘的 自由的 疯狂的 "
    "平凡的 奇妙的 古老的 年轻的 寒冷的 炽热的 沉睡的 飞翔的 无尽的 深蓝的 "
    "金色的 白色的 黑色的 红色的 短暂的 完美的 不安的 勇敢的 忧伤的 未完成的"
).split()

ZH_NOUN = (
    "河流 城市 花园 岛屿 森林 王国 时代 青春 记忆 旅程 夏天 冬天 故乡 大海 "
    "山脉 星空 月光 房间 街道 火车 信件 影子 梦境 群山 草原 家族 少年 女人 "
    "男人 孩子 帝国 边境 港湾 雨季 黄昏 黎明 远方 书店 庭院 战争 和平 革命 "
    "秘密 谎言 真相 天空 海岸 沙漠 村庄 小镇 灵魂 心灵 时间 语言 声音 眼睛 "
    "道路 世界"
).split()

ZH_PLACE = (
    "北京 上海 长安 江南 西北 岭南 巴黎 伦敦 东京 纽约 威尼斯 塞北 敦煌 香港 "
    "台北 苏州 杭州 成都 西藏 云南 湘西 南洋 京都 柏林 罗马 布拉格 里斯本 "
    "开罗 莫斯科 维也纳"
).split()

ZH_STORY = (
    "往事 旧事 见闻 纪事 手记 散记 漫游 札记 传奇 故事 日记 书简 回忆录 "
    "游记 三部曲 物语 风物志 家书 速写 岁月"
).split()

ZH_QUAL = "现代 简明 实用 高级 图解 趣味 当代 中国 西方 比较 应用 理论 深入 大众 日常 新编".split()

ZH_BOOKTYPE = (
    "导论 原理 入门 精要 基础 十讲 通识 手册 简史 教程 实践 讲义 概论 方法 "
    "指南 笔记 五十讲 百问 实战 新论"
).split()

ZH_CONCEPTS = "模型 方法 系统 思想 实践 理论 数据 设计 证据 结构 变化 风险 选择 权力 网络 模式 边界 不确定性 增长 秩序".split()

ZH_EDITION = ["（第2版）", "（第3版）", "（第4版）", "（修订版）", "（上）", "（下）", "（插图本）", "（典藏版）"]

ZH_SURNAMES = (
    "王 李 张 刘 陈 杨 黄 赵 吴 周 徐 孙 马 朱 胡 郭 何 高 林 罗 郑 梁 谢 宋 "
    "唐 许 韩 冯 邓 曹 彭 曾 肖 田 董 袁 潘 于 蒋 蔡 余 杜 叶 程 苏 魏 吕 丁 "
    "任 沈 姚 卢 姜 崔 钟 谭 陆 汪 范 金 欧阳 司马 上官"
).split()

ZH_GIVEN_CHARS = (
    "明华伟芳静丽强磊军洋勇艳杰娟涛超秀霞平刚桂文辉玲建海云峰宇晨雪梅琳婷鹏"
    "飞志红波斌颖倩凯浩博思嘉子一雨晓若安怡欣然轩宁远青松柏岚舟澜墨言冰清"
)

# Transliterated foreign names, used for translated Chinese editions.
ZH_FOREIGN_FIRST = (
    "威廉 约翰 玛丽 安娜 罗伯特 詹姆斯 伊丽莎白 乔治 托马斯 查尔斯 苏珊 大卫 "
    "彼得 海伦 弗朗茨 米歇尔 卡尔 艾伦 西尔维娅 亨利 阿瑟 露西 弗吉尼亚 马克 "
    "保罗 丹尼尔 劳拉 爱德华 尼古拉 斯蒂芬"
).split()
ZH_FOREIGN_LAST = (
    "史密斯 布朗 琼斯 米勒 戴维斯 威尔逊 泰勒 安德森 克拉克 刘易斯 沃克 霍尔 "
    "格林 贝克 亚当斯 纳尔逊 卡特 米切尔 罗伯茨 菲利普斯 坎贝尔 帕克 埃文斯 "
    "柯林斯 斯图尔特 莫里斯 罗杰斯 库克 曼彻斯特 格鲁夫"
).split()
ZH_FOREIGN_COUNTRY = "美 美 美 英 英 法 德 俄 意 加 澳 瑞典".split()
ZH_JAPANESE_LAST = "村上 东野 渡边 太宰 川端 芥川 宫崎 大江 伊坂 吉本".split()
ZH_JAPANESE_FIRST = "春树 圭吾 淳一 治 康成 龙之介 骏 健三郎 幸太郎 芭娜娜".split()

ZH_PUBLISHERS = (
    "人民文学出版社 上海译文出版社 中华书局 商务印书馆 作家出版社 译林出版社 "
    "生活·读书·新知三联书店 广西师范大学出版社 北京大学出版社 清华大学出版社 "
    "机械工业出版社 电子工业出版社 人民邮电出版社 中信出版社 南海出版公司 "
    "长江文艺出版社 上海文艺出版社 浙江文艺出版社 湖南文艺出版社 中国社会科学出版社 "
    "华夏出版社 东方出版社 岳麓书社 漓江出版社 百花文艺出版社 新星出版社 "
    "上海人民出版社 江苏凤凰文艺出版社 中国青年出版社 少年儿童出版社"
).split()

ZH_PROFESSIONS = (
    "作家 学者 记者 大学教授 历史学家 经济学家 诗人 翻译家 工程师 心理学家 "
    "画家 摄影师 出版人 律师 医生 建筑师 专栏作者 研究员"
).split()
ZH_AWARDS = "茅盾文学奖 鲁迅文学奖 老舍文学奖 普利策奖 布克奖 雨果奖 星云奖 华语传媒大奖".split()
ZH_INSTITUTIONS = "北京大学 复旦大学 南京大学 中国社会科学院 浙江大学 武汉大学 中山大学 牛津大学 哈佛大学".split()
ZH_AUDIENCE = "普通读者 大学生 研究者 中学生 从业者 初学者 爱好者 教师".split()
ZH_STYLE = "细腻 冷静 幽默 克制 诗意 朴素 犀利 深情".split()

# Genres without topics are fiction-like: they get literary titles.
Genre = collections.namedtuple("Genre", "zh en zh_topics en_topics zh_tags en_tags")
GENRES = [Genre(*g) for g in [
    ("小说", "Fiction", [], [],
     "小说 文学 爱情 成长 外国文学 中国文学 长篇小说 经典".split(),
     "fiction novel literature classic love coming-of-age".split()),
    ("悬疑", "Mystery", [], [],
     "悬疑 推理 侦探 犯罪 日本推理 惊悚".split(),
     "mystery thriller crime detective suspense".split()),
    ("科幻", "Science Fiction", [], [],
     "科幻 奇幻 未来 太空 科幻小说 赛博朋克".split(),
     "sci-fi fantasy space future dystopia".split()),
    ("散文", "Essays", [], [],
     "散文 随笔 游记 杂文 人生 生活".split(),
     "essays memoir travel nonfiction life".split()),
    ("历史", "History",
     "历史学 中国史 世界史 考古学 人类学 文明史".split(),
     "History;World History;Archaeology;Anthropology;Civilization;Ancient Rome".split(";"),
     "历史 中国历史 世界史 考古 文化 传记 人物".split(),
     "history biography archaeology civilization culture".split()),
    ("计算机", "Computing",
     "数据结构 算法 操作系统 数据库系统 计算机网络 机器学习 编译原理 分布式系统 软件工程 编程".split(),
     "Data Structures;Algorithms;Operating Systems;Database Systems;Computer Networks;"
     "Machine Learning;Compilers;Distributed Systems;Software Engineering;Programming".split(";"),
     "计算机 编程 算法 数据库 互联网 IT Python Linux".split(),
     "programming computer-science algorithms databases software Python Linux".split()),
    ("经济", "Economics",
     "经济学 金融学 投资学 管理学 市场营销 会计学 博弈论 宏观经济学".split(),
     "Economics;Finance;Investing;Management;Marketing;Accounting;Game Theory;Macroeconomics".split(";"),
     "经济学 金融 投资 管理 商业 创业 理财".split(),
     "economics finance investing business management".split()),
    ("心理", "Psychology",
     "心理学 认知科学 社会学 教育学 传播学 组织行为学".split(),
     "Psychology;Cognitive Science;Sociology;Education;Communication;Organizational Behavior".split(";"),
     "心理学 社会学 教育 思维 沟通 自我成长".split(),
     "psychology sociology education self-help thinking".split()),
    ("科学", "Science",
     "物理学 化学 生物学 天文学 地理学 数学 线性代数 概率论 统计学".split(),
     "Physics;Chemistry;Biology;Astronomy;Geography;Mathematics;Linear Algebra;Probability;Statistics".split(";"),
     "科普 科学 物理 数学 宇宙 生物 自然".split(),
     "science popular-science physics mathematics biology nature".split()),
    ("艺术", "Arts",
     "美学 建筑学 设计 摄影 绘画 音乐 电影 烹饪 园艺".split(),
     "Aesthetics;Architecture;Design;Photography;Painting;Music;Film;Cooking;Gardening".split(";"),
     "艺术 设计 摄影 绘画 音乐 电影 建筑 美食".split(),
     "art design photography music film architecture cooking".split()),
]]

ZH_GENERIC_TAGS = "经典 名著 推荐 好书 外国 日本 美国 英国 中国 当代 必读 收藏".split()
EN_GENERIC_TAGS = "classic must-read favorites bestseller british american to-read modern".split()

# --------------------------------------------------------------------------
# Vocabulary: English
# --------------------------------------------------------------------------

EN_ADJ = (
    "Silent Distant Burning Invisible Last Long Gentle Broken Lonely Bright Secret "
    "Flowing Lost Quiet Eternal Wandering Vanishing Hidden Free Restless Ordinary "
    "Strange Ancient Young Cold Burnt Sleeping Flying Endless Blue Golden White "
    "Black Crimson Brief Perfect Uneasy Brave Sorrowful Unfinished Northern Southern "
    "Forgotten Wild Hollow Iron Glass Paper Midnight Winter"
).split()

EN_NOUN = (
    "River City Garden Island Forest Kingdom Age Youth Memory Journey Summer "
    "Homeland Sea Mountain Sky Moonlight Room Street Train Letter Shadow Dream "
    "Prairie Family Boy Woman Man Child Empire Border Harbor Rain Dusk Dawn Horizon "
    "Bookshop Courtyard War Peace Revolution Lie Truth Coast Desert Village Town "
    "Soul Heart Time Language Voice Eye Road Bridge World House Sister Brother "
    "Daughter Son Orchard Storm Fire Silence Stranger Winter"
).split()

EN_GERUND = (
    "Chasing Remembering Finding Leaving Crossing Keeping Burning Reading Saving "
    "Losing Building Naming Waiting for Dreaming of Becoming"
).split()

EN_PLACES = (
    "Paris;London;Tokyo;New York;Venice;Berlin;Rome;Prague;Lisbon;Cairo;Moscow;"
    "Vienna;Dublin;Boston;Chicago;Shanghai;Kyoto;Oxford;Bombay;Havana"
).split(";")

EN_SUBTITLES = [
    "A Novel", "A Memoir", "Stories", "A History", "Poems", "An Investigation",
    "A Family Saga", "Essays", "A Love Story", "A Thriller", "A Biography",
]

EN_BOOKTYPE_PATTERNS = [
    "Introduction to {t}", "Principles of {t}", "{t}: A Modern Approach",
    "{t} in Practice", "The Elements of {t}", "Essential {t}", "{t} for Beginners",
    "A Short History of {t}", "Foundations of {t}", "Thinking About {t}",
    "{t} Explained", "Advanced {t}", "Understanding {t}", "The Art of {t}",
    "{t}: Theory and Applications", "Notes on {t}",
]
EN_CONCEPTS = (
    "Models Methods Systems Ideas Practice Theory Data Design Evidence Structure "
    "Change Risk Choice Power Networks Patterns Limits Uncertainty Growth Order"
).split()
EN_EDITION = [" (2nd Edition)", " (3rd Edition)", " (4th Edition)", " (Revised Edition)", ", Volume 1", ", Volume 2"]

EN_FIRST = (
    "James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David "
    "Barbara Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Nancy "
    "Matthew Lisa Anthony Margaret Mark Sandra Paul Ashley Steven Emily Andrew Donna "
    "Kenneth Michelle Joshua Carol Kevin Amanda Brian Melissa George Deborah Edward "
    "Rebecca Ronald Laura Timothy Helen"
).split()
EN_LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez "
    "Hernandez Lopez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Thompson "
    "White Harris Clark Lewis Robinson Walker Young Allen King Wright Scott Hill "
    "Green Adams Baker Nelson Carter Mitchell Roberts Turner Phillips Campbell Parker "
    "Evans Edwards Collins Stewart Morris Rogers Reed Cook Morgan Bell Murphy Bailey "
    "Cooper Richardson Cox Howard"
).split()
EN_INITIALS = "A B C D E F G H J K L M N P R S T W".split()

EN_PUBLISHERS = (
    "Penguin Books;Random House;HarperCollins;Simon & Schuster;Macmillan;Vintage;"
    "Oxford University Press;Cambridge University Press;MIT Press;O'Reilly Media;"
    "Addison-Wesley;Pearson;Wiley;Springer;Norton;Knopf;Farrar, Straus and Giroux;"
    "Little, Brown;Faber & Faber;Bloomsbury"
).split(";")

EN_PROFESSIONS = (
    "novelist;historian;journalist;professor;economist;poet;translator;engineer;"
    "psychologist;painter;photographer;editor;lawyer;physician;architect;columnist;"
    "researcher;software developer"
).split(";")
EN_AWARDS = "the Pulitzer Prize;the Booker Prize;the National Book Award;the Hugo Award;the Nebula Award;the Edgar Award".split(";")
EN_INSTITUTIONS = "Harvard University;Stanford University;Oxford;Cambridge;MIT;Columbia University;Princeton;Berkeley".split(";")
EN_AUDIENCE = "general readers;students;researchers;practitioners;beginners;teachers".split(";")
EN_STYLE = "lyrical;precise;witty;restrained;vivid;unsentimental;tender;sharp".split(";")

# --------------------------------------------------------------------------
# Table-of-contents words: used only in `content`, never in any other field.
# --------------------------------------------------------------------------

CONTENT_WORDS_ZH = (
    "灯塔 钟摆 琥珀 萤火虫 风铃 罗盘 铁轨 蒲公英 珊瑚 瞭望台 橡树 银杏 陶罐 "
    "渡口 雪橇 信鸽 冰川 沙漏 望远镜 纸鸢 石磨 竹筏 驼铃 邮戳 棱镜 蜂巢 磁针 "
    "铜镜 苔藓 蝴蝶 鲸鱼 风筝 灯笼 瓷瓶 木偶 算盘 织布机 猫头鹰 萤石 钥匙"
).split()
CONTENT_WORDS_EN = (
    "lighthouse pendulum amber firefly windchime compass railway dandelion coral "
    "watchtower oak ginkgo jar ferry sledge pigeon glacier hourglass telescope kite "
    "millstone raft camelbell postmark prism beehive magnet looking-glass moss "
    "butterfly whale lantern porcelain puppet abacus spindle owl fluorite key"
).split()

ZH_NUMERALS = "一 二 三 四 五 六 七 八 九 十 十一 十二 十三 十四 十五 十六".split()


# --------------------------------------------------------------------------
# Field builders
# --------------------------------------------------------------------------

def zh_person(rng):
    name = rng.choice(ZH_SURNAMES) + rng.choice(ZH_GIVEN_CHARS)
    if rng.random() < 0.6:
        name += rng.choice(ZH_GIVEN_CHARS)
    return name


def zh_foreign_person(rng):
    """A translated author name, in the real file's mixed styles."""
    if rng.random() < 0.2:
        country, name = "日", rng.choice(ZH_JAPANESE_LAST) + rng.choice(ZH_JAPANESE_FIRST)
    else:
        country = rng.choice(ZH_FOREIGN_COUNTRY)
        name = rng.choice(ZH_FOREIGN_FIRST) + "·" + rng.choice(ZH_FOREIGN_LAST)
    style = rng.random()
    if style < 0.7:
        return "[%s] %s" % (country, name)
    if style < 0.9:
        return "（%s）%s" % (country, name)
    return "(%s)%s" % (country, name.replace("·", "."))


def en_person(rng):
    if rng.random() < 0.3:
        return "%s %s. %s" % (rng.choice(EN_FIRST), rng.choice(EN_INITIALS), rng.choice(EN_LAST))
    return "%s %s" % (rng.choice(EN_FIRST), rng.choice(EN_LAST))


def zh_title(rng, genre):
    topics = genre.zh_topics
    if topics and rng.random() < 0.8:
        title = rng.choice(ZH_QUAL) + rng.choice(topics) + rng.choice(ZH_BOOKTYPE)
        subtitle = rng.random()
        if subtitle < 0.5:
            title += "：%s、%s与%s" % tuple(rng.sample(ZH_CONCEPTS, 3))
        elif subtitle < 0.8:
            title += "：写给%s的%s" % (rng.choice(ZH_AUDIENCE), rng.choice(ZH_CONCEPTS))
        if rng.random() < 0.3:
            title += rng.choice(ZH_EDITION)
        return title
    pattern = rng.random()
    if pattern < 0.4:
        title = rng.choice(ZH_ADJ) + rng.choice(ZH_NOUN)
    elif pattern < 0.6:
        first, second = rng.sample(ZH_NOUN, 2)
        title = first + "与" + second
    elif pattern < 0.8:
        title = rng.choice(ZH_PLACE) + "的" + rng.choice(ZH_NOUN)
    else:
        title = rng.choice(ZH_NOUN) + rng.choice(ZH_STORY)
    if rng.random() < 0.85:
        title += "：" + rng.choice(ZH_PLACE) + rng.choice(ZH_STORY)
    return title


def en_title(rng, genre):
    if genre.en_topics and rng.random() < 0.8:
        title = rng.choice(EN_BOOKTYPE_PATTERNS).format(t=rng.choice(genre.en_topics))
        subtitle = rng.random()
        if subtitle < 0.6 and ":" not in title:
            title += ": %s, %s and %s" % tuple(rng.sample(EN_CONCEPTS, 3))
        elif subtitle < 0.8:
            title += " for %s" % rng.choice(EN_AUDIENCE).title()
        if rng.random() < 0.4:
            title += rng.choice(EN_EDITION)
        return title
    pattern = rng.random()
    if pattern < 0.35:
        title = "The %s %s" % (rng.choice(EN_ADJ), rng.choice(EN_NOUN))
    elif pattern < 0.6:
        first, second = rng.sample(EN_NOUN, 2)
        title = "The %s of the %s %s" % (first, rng.choice(EN_ADJ), second)
    elif pattern < 0.8:
        title = "%s the %s %s" % (rng.choice(EN_GERUND), rng.choice(EN_ADJ), rng.choice(EN_NOUN))
    else:
        title = "A %s in %s" % (rng.choice(EN_NOUN), rng.choice(EN_PLACES))
    if rng.random() < 0.75:
        title += ": " + rng.choice(EN_SUBTITLES)
    return title


def zh_author_intro(rng, author):
    name = author.split(" ")[-1].split("）")[-1].split(")")[-1]
    parts = ["%s，%d年生于%s，%s。" % (name, rng.randint(1920, 1995), rng.choice(ZH_PLACE), rng.choice(ZH_PROFESSIONS))]
    extras = [
        "著有《%s%s》《%s%s》等作品。" % (rng.choice(ZH_ADJ), rng.choice(ZH_NOUN), rng.choice(ZH_NOUN), rng.choice(ZH_STORY)),
        "曾获%s。" % rng.choice(ZH_AWARDS),
        "现任职于%s。" % rng.choice(ZH_INSTITUTIONS),
        "长期关注%s与%s的问题。" % tuple(rng.sample(ZH_NOUN, 2)),
    ]
    rng.shuffle(extras)
    parts.extend(extras[: rng.randint(1, 3)])
    return "".join(parts) + "\n"


def zh_book_intro(rng, title, genre):
    n1, n2, n3 = rng.sample(ZH_NOUN, 3)
    sentences = [
        "《%s》是一部关于%s与%s的%s作品。" % (title, n1, n2, genre.zh),
        "作者以%s的笔触，写出了%s在%s的%s。" % (rng.choice(ZH_STYLE), rng.choice(ZH_NOUN), rng.choice(ZH_PLACE), n3),
        "本书适合%s阅读，也可供%s参考。" % tuple(rng.sample(ZH_AUDIENCE, 2)),
        "全书共分%s章，从%s讲到%s。" % (rng.choice(ZH_NUMERALS), n1, n3),
        "出版以来深受读者喜爱，被誉为%s题材的%s之作。" % (genre.zh, rng.choice(["经典", "里程碑", "开山", "必读"])),
    ]
    rng.shuffle(sentences)
    return "".join(sentences[: rng.randint(2, 5)])


def en_author_intro(rng, author):
    job = rng.choice(EN_PROFESSIONS)
    parts = ["%s was born in %d in %s and works as %s %s." % (
        author, rng.randint(1920, 1995), rng.choice(EN_PLACES), "an" if job[0] in "aeiou" else "a", job)]
    extras = [
        "Their previous books include The %s %s." % (rng.choice(EN_ADJ), rng.choice(EN_NOUN)),
        "They have received %s." % rng.choice(EN_AWARDS),
        "They teach at %s." % rng.choice(EN_INSTITUTIONS),
        "They write about %s and %s." % tuple(n.lower() for n in rng.sample(EN_NOUN, 2)),
    ]
    rng.shuffle(extras)
    parts.extend(extras[: rng.randint(1, 3)])
    return " ".join(parts) + "\n"


def en_book_intro(rng, title, genre):
    n1, n2, n3 = (n.lower() for n in rng.sample(EN_NOUN, 3))
    sentences = [
        "%s is a %s book about %s and %s." % (title, genre.en.lower(), n1, n2),
        "In %s prose, the author follows a %s from %s." % (rng.choice(EN_STYLE), n3, rng.choice(EN_PLACES)),
        "Written for %s as well as %s." % tuple(rng.sample(EN_AUDIENCE, 2)),
        "The book is divided into %d chapters." % rng.randint(3, 16),
        "Widely praised as a landmark of %s." % genre.en.lower(),
    ]
    rng.shuffle(sentences)
    return " ".join(sentences[: rng.randint(2, 5)])


def zh_content(rng):
    lines = []
    for i in range(rng.randint(3, 12)):
        word = rng.choice(CONTENT_WORDS_ZH)
        if rng.random() < 0.5:
            word += "与" + rng.choice(CONTENT_WORDS_ZH)
        lines.append("第%s章 %s" % (ZH_NUMERALS[i], word))
    if rng.random() < 0.3:
        lines.insert(0, "序言")
    lines.append("后记")
    return "\n".join(lines) + "\n"


def en_content(rng):
    lines = []
    for i in range(rng.randint(3, 12)):
        word = rng.choice(CONTENT_WORDS_EN)
        if rng.random() < 0.5:
            word += " and the " + rng.choice(CONTENT_WORDS_EN)
        lines.append("Chapter %d: The %s" % (i + 1, word.capitalize()))
    if rng.random() < 0.3:
        lines.insert(0, "Preface")
    lines.append("Acknowledgments")
    return "\n".join(lines) + "\n"


def make_tags(rng, zh, genre, author):
    """3-8 distinct tags, newline-separated with a trailing newline."""
    own = genre.zh_tags if zh else genre.en_tags
    generic = ZH_GENERIC_TAGS if zh else EN_GENERIC_TAGS
    count = rng.randint(3, 8)
    tags = [genre.zh if zh else genre.en.lower().replace(" ", "-")]
    if author and rng.random() < 0.3:
        tags.append(author.split(" ")[-1])
    pool = own + generic
    for tag in rng.sample(pool, min(len(pool), count)):
        if len(tags) >= count:
            break
        if tag not in tags:
            tags.append(tag)
    return "".join(tag + "\n" for tag in tags)


def pub_year(rng):
    year, month = rng.randint(1950, 2023), rng.randint(1, 12)
    style = rng.random()
    if style < 0.6:
        return "%d-%d" % (year, month)
    if style < 0.9:
        return "%d-%02d" % (year, month)
    return "%d-%d-%d" % (year, month, rng.randint(1, 28))


def isbn13(prefix, book_id):
    """A valid ISBN-13; the 8 body digits are a bijection of the id, so unique."""
    body = prefix + "%08d" % ((book_id * 7919 + 12345) % 10 ** 8)
    total = sum(int(d) * (1 if i % 2 == 0 else 3) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def png_bytes(rng):
    """A tiny valid RGB PNG (2-6 px per side) of random colours around a base hue."""
    width, height = rng.randint(2, 6), rng.randint(2, 6)
    base = [rng.randrange(256) for _ in range(3)]
    raw = bytearray()
    for _ in range(height):
        raw.append(0)  # filter type: none
        for _ in range(width):
            raw.extend((c + rng.randint(-40, 40)) % 256 for c in base)

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b""))


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------

def iter_books(rows, seed=0):
    """Yield `rows` book dicts (keys = COLUMNS), deterministic for `seed`."""
    rng = random.Random(seed)
    book_id = 1000000 + rng.randrange(50000)
    for _ in range(rows):
        book_id += rng.randint(1, 40)
        zh = rng.random() < 0.7
        genre = rng.choice(GENRES)
        original_title = translator = None
        if zh:
            title = zh_title(rng, genre)
            if rng.random() < 0.3:  # a translated foreign book
                author = zh_foreign_person(rng)
                if rng.random() < 0.7:
                    original_title = en_title(rng, genre)
                translator = zh_person(rng) + rng.choice(["", "", "", " 等", " 译"])
            else:
                author = zh_person(rng)
            publisher = rng.choice(ZH_PUBLISHERS)
            currency = "元"
            binding = "精装" if rng.random() < 0.15 else "平装"
            isbn = isbn13("9787", book_id)
        else:
            title = en_title(rng, genre)
            author = en_person(rng)
            publisher = rng.choice(EN_PUBLISHERS)
            currency = "USD"
            binding = "Hardcover" if rng.random() < 0.3 else "Paperback"
            isbn = isbn13("978" + rng.choice("01"), book_id)
        if rng.random() < 0.07:
            author = None

        pages = rng.randint(60, 900) if rng.random() < 0.95 else rng.randint(900, 1600)
        cents_per_page = rng.uniform(5, 12) if zh else rng.uniform(3, 8)
        if binding in ("精装", "Hardcover"):
            cents_per_page *= 1.5
        price = max(100, min(30000, int(pages * cents_per_page)))

        if author is None or rng.random() < 0.2:
            author_intro = ""
        elif zh:
            author_intro = zh_author_intro(rng, author)
        else:
            author_intro = en_author_intro(rng, author)
        if rng.random() < 0.06:
            book_intro = ""
        else:
            book_intro = (zh_book_intro if zh else en_book_intro)(rng, title, genre)
        if rng.random() < 0.13:
            content = ""
        else:
            content = zh_content(rng) if zh else en_content(rng)

        yield {
            "id": str(book_id),
            "title": title,
            "author": author,
            "publisher": publisher,
            "original_title": original_title,
            "translator": translator,
            "pub_year": pub_year(rng),
            "pages": pages,
            "price": price,
            "currency_unit": currency,
            "binding": binding,
            "isbn": isbn,
            "author_intro": author_intro,
            "book_intro": book_intro,
            "content": content,
            "tags": make_tags(rng, zh, genre, author),
            "picture": png_bytes(rng) if rng.random() < 0.9 else None,
        }


def generate(path, rows, seed=0):
    """Write a fresh `book` table with `rows` books to SQLite file `path` (overwritten)."""
    path = os.fspath(path)
    for stale in (path, path + "-journal", path + "-wal", path + "-shm"):
        if os.path.exists(stale):
            os.remove(stale)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute(CREATE_TABLE)
        insert = "INSERT INTO book VALUES (%s)" % ", ".join("?" * len(COLUMNS))
        with conn:
            conn.executemany(insert, (tuple(book[c] for c in COLUMNS)
                                      for book in iter_books(rows, seed)))
    finally:
        conn.close()
    return rows

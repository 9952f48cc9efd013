"""Where the client layer and the REST tests find the server and the book data.
The test fixtures in fe/conftest.py point these at an in-process server and a
generated book file; the bench and the scripts take them from flags."""
import os

URL = os.environ.get("BOOKSTORE_URL", "http://127.0.0.1:5000/")
Book_DB = os.environ.get("BOOKSTORE_BOOK_DB", "")
Use_Large_DB = False
Book_Num_Per_Store = 200
Store_Num_Per_User = 2
Seller_Num = 2
Buyer_Num = 10
Session = 1
Request_Per_Session = 1000
Default_Stock_Level = 1000000
Default_User_Funds = 10000000
Data_Batch_Size = 100
Use_Multi_Thread = False
